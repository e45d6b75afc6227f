namespace TokenBroker.Exchange;

/// <summary>RFC 8693 token type and grant identifiers.</summary>
public static class TokenTypes
{
    public const string TokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange";
    public const string Jwt = "urn:ietf:params:oauth:token-type:jwt";
    public const string IdToken = "urn:ietf:params:oauth:token-type:id_token";
    public const string AccessToken = "urn:ietf:params:oauth:token-type:access_token";
}
