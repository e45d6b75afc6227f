using TokenBroker.Rules.Model;

namespace TokenBroker.Rules.Evaluation;

/// <summary>What a job asks for, besides presenting its token.</summary>
/// <param name="Provider">The configured provider that issued the (verified) job token.</param>
/// <param name="Audiences">Requested audiences and resources; empty when the request named none.</param>
/// <param name="Scopes">Requested scopes, or null when the request had no <c>scope</c> parameter.</param>
public sealed record PolicyRequest(string Provider, IReadOnlyList<string> Audiences, IReadOnlyList<string>? Scopes);

/// <summary>How a policy evaluation ended.</summary>
public enum PolicyOutcome
{
    Granted,

    /// <summary>No rule's conditions hold for the token.</summary>
    NoRuleMatched,

    /// <summary>Rules match the token, but none grants every requested audience.</summary>
    AudienceNotGranted,

    /// <summary>The request named no audience and the deciding rule grants several.</summary>
    AudienceRequired,

    /// <summary>The deciding rule does not grant every requested scope.</summary>
    ScopeNotGranted,

    /// <summary>The deciding rule's subject or claims read a claim the token does not carry.</summary>
    TemplateClaimMissing,
}

/// <summary>A rendered claim value: a string, a list of values or an ordered map.</summary>
public abstract record ClaimValue
{
    public sealed record Text(string Value) : ClaimValue;

    public sealed record List(IReadOnlyList<ClaimValue> Items) : ClaimValue;

    public sealed record Map(IReadOnlyList<KeyValuePair<string, ClaimValue>> Entries) : ClaimValue;
}

/// <summary>The decision for one request, with what a token would carry and, when asked for, the trace.</summary>
public sealed record PolicyDecision
{
    public required PolicyOutcome Outcome { get; init; }

    /// <summary>The deciding rule (also set for scope and template refusals).</summary>
    public TrustRule? Rule { get; init; }

    public IReadOnlyList<string> Audiences { get; init; } = [];

    public IReadOnlyList<string> Scopes { get; init; } = [];

    public string? Subject { get; init; }

    public IReadOnlyList<KeyValuePair<string, ClaimValue>> Claims { get; init; } = [];

    /// <summary>For operators: why the request was refused, naming rules and claims. Never shown to the caller.</summary>
    public string? Detail { get; init; }

    /// <summary>Per-rule trace, when requested.</summary>
    public IReadOnlyList<RuleTrace>? Trace { get; init; }

    public bool IsGranted => Outcome == PolicyOutcome.Granted;
}

/// <summary>How one rule fared against a token.</summary>
public sealed record RuleTrace(string RuleId, IReadOnlyList<ConditionTrace> Conditions, string? PullRequestGuard, bool ConditionsHeld, bool? AudiencesGranted);

/// <summary>One condition: the claim as written, the raw claim read, what was expected, what the token had.</summary>
public sealed record ConditionTrace(string Claim, string Source, string Expected, string? Actual, bool Held);

/// <summary>Renders traces for operators: for each rule, the conditions that failed, with expected and actual values.</summary>
public static class TraceSummary
{
    public static string Summarize(IReadOnlyList<RuleTrace> traces, int maxRules = 10)
    {
        if (traces.Count == 0)
        {
            return "no rule is configured for this provider";
        }

        var parts = new List<string>();
        foreach (var t in traces.Take(maxRules))
        {
            var failed = t.Conditions.Where(c => !c.Held)
                .Select(c => $"{c.Claim} {c.Expected} but token has {(c.Actual is null ? "no such claim" : $"\"{Printable(c.Actual)}\"")}")
                .ToList();
            if (t.PullRequestGuard is not null)
            {
                failed.Add(t.PullRequestGuard);
            }

            if (t.ConditionsHeld && t.AudiencesGranted == false)
            {
                failed.Add("does not grant the requested audiences");
            }

            parts.Add($"{t.RuleId}: {(failed.Count == 0 ? "matched" : string.Join("; ", failed))}");
        }

        if (traces.Count > maxRules)
        {
            parts.Add($"... and {traces.Count - maxRules} more rules");
        }

        return string.Join(" | ", parts);
    }

    private static string Printable(string value)
    {
        var cut = value.Length > 80 ? value[..80] + "..." : value;
        return new string(cut.Select(c => char.IsControl(c) ? '?' : c).ToArray());
    }
}
