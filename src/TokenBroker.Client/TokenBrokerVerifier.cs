using System.Security.Claims;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;

namespace TokenBroker.Client;

/// <summary>A broker token that verified: the job context it carries.</summary>
public sealed record VerifiedToken(ClaimsIdentity Identity)
{
    public string? Subject => Claim("sub");
    public string? Rule => Claim("rule");
    public string? Provider => Claim("provider");
    public string? Repository => Claim("repo");
    public string? RepositoryId => Claim("repo_id");
    public string? Environment => Claim("environment");
    public string? Stage => Claim("stage");
    public string? RunId => Claim("run_id");

    /// <summary>The granted scopes.</summary>
    public IReadOnlyList<string> Scopes => Claim("scope")?.Split(' ', StringSplitOptions.RemoveEmptyEntries) ?? [];

    public string? Claim(string type) => Identity.FindFirst(type)?.Value;
}

/// <summary>
/// Verifies broker tokens offline, as a service receiving them would: keys from the broker's OIDC discovery and
/// JWKS (cached, refreshed on unknown key ids), exact issuer, the expected audience, <c>typ</c>, lifetime.
/// Thread-safe; reuse one instance per broker.
/// </summary>
public sealed class TokenBrokerVerifier
{
    private readonly ConfigurationManager<OpenIdConnectConfiguration> _configuration;
    private readonly string _issuer;
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };

    /// <param name="issuer">The broker's issuer URL, exactly as in its tokens.</param>
    /// <param name="http">Optional HTTP client for discovery and JWKS.</param>
    /// <param name="requireHttps">Refuse plain-http discovery (default true; tests on loopback turn it off).</param>
    public TokenBrokerVerifier(Uri issuer, HttpClient? http = null, bool requireHttps = true)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        _issuer = issuer.AbsoluteUri.TrimEnd('/');
        var retriever = http is null ? new HttpDocumentRetriever { RequireHttps = requireHttps } : new HttpDocumentRetriever(http) { RequireHttps = requireHttps };
        _configuration = new ConfigurationManager<OpenIdConnectConfiguration>(_issuer + "/.well-known/openid-configuration", new OpenIdConnectConfigurationRetriever(), retriever);
    }

    /// <summary>Accepted algorithms. Default: ES256, ES384, RS256, PS256 (what the broker signs with).</summary>
    public IReadOnlyList<string> Algorithms { get; init; } = ["ES256", "ES384", "RS256", "PS256"];

    /// <summary>Allowed clock skew. Default: 30 seconds.</summary>
    public TimeSpan ClockSkew { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Verifies a token for <paramref name="audience"/>.</summary>
    /// <param name="token">The token.</param>
    /// <param name="audience">This service's audience; the token must name it.</param>
    /// <param name="plainJwt">Expect <c>typ: JWT</c> (cloud federation) instead of <c>at+jwt</c>.</param>
    /// <param name="cancellationToken">Cancels the discovery fetch.</param>
    /// <exception cref="SecurityTokenException">The token is not valid for this audience.</exception>
    public async Task<VerifiedToken> VerifyAsync(string token, string audience, bool plainJwt = false, CancellationToken cancellationToken = default)
    {
        var configuration = await _configuration.GetConfigurationAsync(cancellationToken).ConfigureAwait(false);
        var result = await _handler.ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = _issuer,
            ValidAudience = audience,
            IssuerSigningKeys = configuration.SigningKeys,
            ValidAlgorithms = Algorithms,
            ValidTypes = [plainJwt ? "JWT" : "at+jwt"],
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            ClockSkew = ClockSkew,
        }).ConfigureAwait(false);
        if (!result.IsValid)
        {
            if (result.Exception is SecurityTokenSignatureKeyNotFoundException)
            {
                _configuration.RequestRefresh();
            }

            throw result.Exception as SecurityTokenException ?? new SecurityTokenException("token is not valid", result.Exception);
        }

        return new VerifiedToken(result.ClaimsIdentity);
    }
}
