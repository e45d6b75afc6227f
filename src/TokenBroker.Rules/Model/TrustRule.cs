using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Providers;

namespace TokenBroker.Rules.Model;

/// <summary>One compiled <c>when</c> entry: a claim name as written, how to read it, and the test.</summary>
public sealed record ClaimCondition(string Claim, ClaimAccessor Accessor, Condition Condition, SourceLocation Location);

/// <summary>A value of an extra claim in <c>grant.claims</c>: a template, a list, or a map of them.</summary>
public abstract record ClaimValueTemplate
{
    public sealed record Text(Template Template) : ClaimValueTemplate;

    public sealed record List(IReadOnlyList<ClaimValueTemplate> Items) : ClaimValueTemplate;

    public sealed record Map(IReadOnlyList<KeyValuePair<string, ClaimValueTemplate>> Entries) : ClaimValueTemplate;
}

/// <summary>What a matching rule grants. Immutable.</summary>
public sealed record Grant
{
    public required IReadOnlyList<string> Audiences { get; init; }

    public required IReadOnlyList<string> Scopes { get; init; }

    /// <summary>The stage the token is for; <c>read</c> is the only stage pull-request tokens reach by default.</summary>
    public required string Stage { get; init; }

    /// <summary>Upper bound of the issued token's lifetime.</summary>
    public required TimeSpan Ttl { get; init; }

    public required Template Subject { get; init; }

    public required IReadOnlyList<KeyValuePair<string, ClaimValueTemplate>> Claims { get; init; }

    /// <summary>
    /// Audiences for which a token this rule issued may be exchanged for a narrower one (a subset of its
    /// audiences and scopes, no longer lived). Empty: the rule's tokens cannot be downscoped.
    /// </summary>
    public IReadOnlyList<string> DownscopeAudiences { get; init; } = [];
}

/// <summary>A compiled trust rule: the conditions that must all hold, and the grant.</summary>
public sealed record TrustRule
{
    public required string Id { get; init; }

    public string? Description { get; init; }

    public required string Provider { get; init; }

    public required IReadOnlyList<ClaimCondition> Conditions { get; init; }

    /// <summary>Opt-in that lets pull-request-triggered tokens reach a non-read stage.</summary>
    public bool AllowPullRequests { get; init; }

    public required Grant Grant { get; init; }

    public required SourceLocation Location { get; init; }

    /// <summary>The stage that pull-request tokens may reach without an opt-in.</summary>
    public const string ReadStage = "read";
}
