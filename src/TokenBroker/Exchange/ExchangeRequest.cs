namespace TokenBroker.Exchange;

/// <summary>A parsed, shape-checked RFC 8693 request. Nothing in it is trusted yet.</summary>
internal sealed record ExchangeRequest
{
    public required string SubjectToken { get; init; }
    public required string SubjectTokenType { get; init; }
    public required string RequestedTokenType { get; init; }

    /// <summary>Audience and resource values, in request order, without duplicates.</summary>
    public required IReadOnlyList<string> Audiences { get; init; }

    /// <summary>Requested scopes, or null when the request had no <c>scope</c>.</summary>
    public IReadOnlyList<string>? Scopes { get; init; }

    /// <summary>An upper bound on the lifetime the caller wants (non-standard <c>requested_lifetime</c>, seconds).</summary>
    public TimeSpan? RequestedLifetime { get; init; }
}
