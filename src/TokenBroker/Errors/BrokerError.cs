namespace TokenBroker.Errors;

/// <summary>
/// A refusal the broker knows how to explain: the RFC 6749 error code, a stable id, the HTTP status and a short
/// description that is safe to show to the caller (it never contains token content).
/// </summary>
public sealed record BrokerError(string Id, string Code, int Status, string Description)
{
    /// <summary>True for refusals the caller should retry (503 and 429, both with Retry-After).</summary>
    public bool IsTransient => Status is StatusCodes.Status503ServiceUnavailable or StatusCodes.Status429TooManyRequests;
}

/// <summary>RFC 6749 / RFC 8693 error codes.</summary>
public static class OAuthErrorCodes
{
    public const string InvalidRequest = "invalid_request";
    public const string InvalidClient = "invalid_client";
    public const string InvalidTarget = "invalid_target";
    public const string InvalidScope = "invalid_scope";
    public const string UnsupportedGrantType = "unsupported_grant_type";
    public const string TemporarilyUnavailable = "temporarily_unavailable";
    public const string ServerError = "server_error";
}
