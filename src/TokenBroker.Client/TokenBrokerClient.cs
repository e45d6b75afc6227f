using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace TokenBroker.Client;

/// <summary>What to ask the broker for.</summary>
public sealed record TokenExchangeRequest
{
    /// <summary>The CI job token (GitHub Actions or GitLab CI id_token).</summary>
    public required string SubjectToken { get; init; }

    /// <summary>The audiences the issued token must carry (at least one, unless the rule grants exactly one).</summary>
    public IReadOnlyList<string> Audiences { get; init; } = [];

    /// <summary>Scopes; null for whatever the matching rule grants.</summary>
    public IReadOnlyList<string>? Scopes { get; init; }

    /// <summary>A plain JWT (<c>typ: JWT</c>) for cloud federation instead of an RFC 9068 access token. Default: false.</summary>
    public bool PlainJwt { get; init; }

    /// <summary>An upper bound on the lifetime; the rule's ttl bounds it anyway.</summary>
    public TimeSpan? Lifetime { get; init; }

    /// <summary>
    /// <c>urn:ietf:params:oauth:token-type:id_token</c> (default) for a CI job token, or
    /// <c>...:access_token</c> to downscope a token this broker issued.
    /// </summary>
    public string SubjectTokenType { get; init; } = TokenTypes.IdToken;
}

/// <summary>The broker's answer to a successful exchange.</summary>
/// <param name="AccessToken">The issued token. Treat it as a secret: never log it.</param>
/// <param name="IssuedTokenType">RFC 8693 <c>issued_token_type</c>.</param>
/// <param name="TokenType"><c>Bearer</c>, or <c>N_A</c> for a plain JWT.</param>
/// <param name="ExpiresIn">Lifetime granted.</param>
/// <param name="Scope">The granted scopes when they differ from the request.</param>
public sealed record IssuedToken(string AccessToken, string IssuedTokenType, string TokenType, TimeSpan ExpiresIn, string? Scope)
{
    /// <summary>Hides the token from accidental logging.</summary>
    public override string ToString() => $"IssuedToken {{ TokenType = {TokenType}, ExpiresIn = {ExpiresIn} }}";
}

/// <summary>RFC 8693 token type identifiers.</summary>
public static class TokenTypes
{
    public const string IdToken = "urn:ietf:params:oauth:token-type:id_token";
    public const string Jwt = "urn:ietf:params:oauth:token-type:jwt";
    public const string AccessToken = "urn:ietf:params:oauth:token-type:access_token";
    public const string TokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange";
}

/// <summary>The broker refused the exchange or could not serve it.</summary>
public sealed class TokenBrokerException : Exception
{
    public TokenBrokerException(HttpStatusCode status, string error, string? errorId, string? description, string? requestId, TimeSpan? retryAfter)
        : base($"TokenBroker answered {(int)status} {error}{(errorId is null ? "" : $" [{errorId}]")}: {description ?? "(no description)"}")
    {
        StatusCode = status;
        Error = error;
        ErrorId = errorId;
        Description = description;
        RequestId = requestId;
        RetryAfter = retryAfter;
    }

    public HttpStatusCode StatusCode { get; }

    /// <summary>The OAuth error code, e.g. <c>invalid_request</c>, <c>invalid_target</c>.</summary>
    public string Error { get; }

    /// <summary>The broker's stable error id, e.g. <c>TB1201</c> (see the broker's docs/errors.md).</summary>
    public string? ErrorId { get; }

    public string? Description { get; }

    /// <summary>Give this to the broker's operators: the audit log has the full reason under it.</summary>
    public string? RequestId { get; }

    public TimeSpan? RetryAfter { get; }

    /// <summary>The broker failed closed (503) or throttled (429): retrying later can succeed.</summary>
    public bool IsTransient => StatusCode is HttpStatusCode.ServiceUnavailable or HttpStatusCode.TooManyRequests;
}

/// <summary>Exchanges CI job tokens at a TokenBroker (RFC 8693). Thread-safe; reuse one instance.</summary>
public sealed class TokenBrokerClient
{
    private readonly HttpClient _http;
    private readonly Uri _tokenEndpoint;

    /// <param name="http">The HTTP client to use (its lifetime is the caller's).</param>
    /// <param name="brokerUrl">The broker's issuer URL, e.g. <c>https://sts.ci.example.com</c>.</param>
    public TokenBrokerClient(HttpClient http, Uri brokerUrl)
    {
        ArgumentNullException.ThrowIfNull(http);
        ArgumentNullException.ThrowIfNull(brokerUrl);
        _http = http;
        _tokenEndpoint = new Uri(brokerUrl.AbsoluteUri.TrimEnd('/') + "/token");
    }

    /// <summary>How many times a transient refusal (503, 429) is retried, honouring Retry-After. Default: 3.</summary>
    public int TransientRetries { get; init; } = 3;

    /// <summary>Exchanges the job token.</summary>
    /// <exception cref="TokenBrokerException">The broker refused, or stayed unavailable through the retries.</exception>
    public async Task<IssuedToken> ExchangeAsync(TokenExchangeRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return await ExchangeOnceAsync(request, cancellationToken).ConfigureAwait(false);
            }
            catch (TokenBrokerException e) when (e.IsTransient && attempt < TransientRetries)
            {
                var delay = e.RetryAfter ?? TimeSpan.FromSeconds(Math.Pow(2, attempt));
                await Task.Delay(delay < TimeSpan.FromSeconds(30) ? delay : TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private async Task<IssuedToken> ExchangeOnceAsync(TokenExchangeRequest request, CancellationToken cancellationToken)
    {
        var form = new List<KeyValuePair<string, string>>
        {
            new("grant_type", TokenTypes.TokenExchangeGrant),
            new("subject_token", request.SubjectToken),
            new("subject_token_type", request.SubjectTokenType),
            new("requested_token_type", request.PlainJwt ? TokenTypes.Jwt : TokenTypes.AccessToken),
        };
        form.AddRange(request.Audiences.Select(a => new KeyValuePair<string, string>("audience", a)));
        if (request.Scopes is not null)
        {
            form.Add(new("scope", string.Join(' ', request.Scopes)));
        }

        if (request.Lifetime is { } lifetime)
        {
            form.Add(new("requested_lifetime", ((long)lifetime.TotalSeconds).ToString(CultureInfo.InvariantCulture)));
        }

        using var content = new FormUrlEncodedContent(form);
        using var response = await _http.PostAsync(_tokenEndpoint, content, cancellationToken).ConfigureAwait(false);
        var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        JsonElement json;
        try
        {
            json = JsonDocument.Parse(body).RootElement;
        }
        catch (JsonException)
        {
            throw new TokenBrokerException(response.StatusCode, "invalid_response", null, "the broker's answer is not JSON", null, RetryAfter(response.Headers));
        }

        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new TokenBrokerException(
                response.StatusCode,
                Text(json, "error") ?? "unknown_error",
                Text(json, "error_id"),
                Text(json, "error_description"),
                Text(json, "request_id"),
                RetryAfter(response.Headers));
        }

        return new IssuedToken(
            Text(json, "access_token") ?? throw new TokenBrokerException(response.StatusCode, "invalid_response", null, "no access_token in the answer", null, null),
            Text(json, "issued_token_type") ?? TokenTypes.AccessToken,
            Text(json, "token_type") ?? "Bearer",
            TimeSpan.FromSeconds(json.TryGetProperty("expires_in", out var e) && e.TryGetInt32(out var s) ? s : 0),
            Text(json, "scope"));
    }

    private static string? Text(JsonElement json, string name) =>
        json.ValueKind == JsonValueKind.Object && json.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static TimeSpan? RetryAfter(HttpResponseHeaders headers) => headers.RetryAfter?.Delta;
}
