using System.Text;
using System.Text.RegularExpressions;
using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Model;
using TokenBroker.Rules.Providers;

namespace TokenBroker.Rules.Linting;

/// <summary>
/// Safety findings about a compiled rule set (TB21xx), each with a one-line fix. The reasoning about which tokens
/// two rules can both match is conservative: two conditions are taken to exclude each other only when one of them
/// lists values (exact or <c>in</c>) and none of those values satisfies the other; patterns on both sides are
/// assumed to overlap. So an overlap finding may be a false alarm, but a shadowing finding is never one.
/// </summary>
public sealed partial class RuleLinter(IReadOnlyDictionary<string, ProviderDescriptor> providers)
{
    /// <summary>The AWS session-tags claim (AWS IAM docs); a rule that writes it is meant for AWS STS.</summary>
    public const string AwsTagsClaim = "https://aws.amazon.com/tags";

    private static readonly string[] AwsAudiences = ["sts.amazonaws.com"];
    private static readonly string[] AzureAudiences = ["api://AzureADTokenExchange", "api://AzureADTokenExchangeUSGov", "api://AzureADTokenExchangeChina"];

    private static readonly (string Name, string Id, string What)[] IdentityClaims =
    [
        ("repository", "repository_id", "repository"),
        ("owner", "owner_id", "owner"),
        ("actor", "actor_id", "actor"),

        // GitHub's and GitLab's default 'sub' names the repository (repo:OWNER/REPO:..., project_path:GROUP/PROJECT:...).
        ("subject", "repository_id", "repository (named in the token's subject)"),
    ];

    /// <summary>Compiles, then lints what compiled. Lint errors, like compile errors, leave no rule set.</summary>
    public static RuleLoadResult CompileAndLint(IReadOnlyDictionary<string, ProviderDescriptor> providers, RuleLoadOptions options, IEnumerable<RuleSource> sources)
    {
        var compiled = new RuleCompiler(providers, options).Compile(sources);
        if (compiled.RuleSet is null)
        {
            return compiled;
        }

        var findings = new RuleLinter(providers).Lint(compiled.RuleSet);
        var all = compiled.Diagnostics.Concat(findings).ToList();
        return new RuleLoadResult(all.Any(d => d.Severity == RuleSeverity.Error) ? null : compiled.RuleSet, all);
    }

    /// <summary>Every finding, ordered by file position.</summary>
    public IReadOnlyList<RuleDiagnostic> Lint(RuleSet rules)
    {
        var findings = new List<RuleDiagnostic>();
        foreach (var rule in rules.Rules)
        {
            if (!providers.TryGetValue(rule.Provider, out var provider))
            {
                continue;
            }

            CheckIdentityClaims(rule, provider, findings);
            CheckPullRequestOptIn(rule, provider, findings);
            CheckCloudAudiences(rule, findings);
        }

        foreach (var group in rules.Rules.GroupBy(r => r.Provider, StringComparer.Ordinal))
        {
            if (providers.TryGetValue(group.Key, out var provider))
            {
                CheckPairs([.. group], provider, findings);
            }
        }

        return [.. findings
            .Select((f, i) => (f, i))
            .OrderBy(x => x.f.Location.File, StringComparer.Ordinal)
            .ThenBy(x => x.f.Location.Line)
            .ThenBy(x => x.f.Location.Column)
            .ThenBy(x => x.i)
            .Select(x => x.f)];
    }

    private static RuleDiagnostic Finding(string id, RuleSeverity severity, TrustRule rule, SourceLocation at, string message, string fix) =>
        new(id, severity, at, message) { Fix = fix, Rule = rule.Id };

    // TB2101 / TB2102: names (which can be renamed and re-registered) without the id claim that cannot.
    private static void CheckIdentityClaims(TrustRule rule, ProviderDescriptor provider, List<RuleDiagnostic> findings)
    {
        var vocabulary = provider.Vocabulary;
        foreach (var (name, id, what) in IdentityClaims)
        {
            var nameAccessor = vocabulary.Neutral(name);
            var idAccessor = vocabulary.Neutral(id);
            if (nameAccessor is null || idAccessor is null)
            {
                continue;
            }

            var idPinned = rule.Conditions.Any(c => !c.Accessor.IsDerived && c.Accessor.Source == idAccessor.Source &&
                c.Condition.FiniteValues is { Count: > 0 } values && values.All(v => v.Length > 0));
            if (idPinned)
            {
                continue;
            }

            foreach (var c in rule.Conditions.Where(c => !c.Accessor.IsDerived && c.Accessor.Source == nameAccessor.Source))
            {
                switch (c.Condition)
                {
                    case { FiniteValues: not null }:
                        findings.Add(Finding(RuleErrors.NameWithoutId, RuleSeverity.Warning, rule, c.Location,
                            $"rule '{rule.Id}' matches the {what} by name ('{c.Claim}' {c.Condition.Describe()}) but does not pin '{id}'; a {what} can be renamed and its old name registered by someone else",
                            $"add '{id}: \"<id>\"' (or an 'in' list of ids) to 'when'; keep the name only as a readable extra"));
                        break;
                    case NotCondition:
                        findings.Add(Finding(RuleErrors.NameWithoutId, RuleSeverity.Warning, rule, c.Location,
                            $"rule '{rule.Id}' excludes a {what} by name ('{c.Claim}' {c.Condition.Describe()}) and does not pin '{id}'; renaming the {what} evades the exclusion",
                            $"list the allowed ids with '{id}: {{ in: [\"<id>\", ...] }}' instead of excluding names"));
                        break;
                    default:
                        findings.Add(Finding(RuleErrors.PatternOnIdentityClaim, RuleSeverity.Warning, rule, c.Location,
                            $"rule '{rule.Id}' matches the {what} name with a pattern ('{c.Claim}' {c.Condition.Describe()}) although the provider has the id claim '{id}'; anyone who can create a {what} whose name fits the pattern gets this grant",
                            $"list the ids instead: '{id}: {{ in: [\"<id>\", ...] }}'"));
                        break;
                }
            }
        }
    }

    // TB2103: an explicit opt-in that lets pull-request tokens reach a privileged stage.
    private static void CheckPullRequestOptIn(TrustRule rule, ProviderDescriptor provider, List<RuleDiagnostic> findings)
    {
        if (!rule.AllowPullRequests || rule.Grant.Stage == TrustRule.ReadStage)
        {
            return;
        }

        var events = PullRequestEventsAdmitted(rule, provider);
        if (events.Count == 0)
        {
            return;
        }

        findings.Add(Finding(RuleErrors.PullRequestOptIn, RuleSeverity.Warning, rule, rule.Location,
            $"rule '{rule.Id}' sets 'allow_pull_requests: true', so tokens from {string.Join(", ", events)} events reach stage '{rule.Grant.Stage}' and audiences [{string.Join(", ", rule.Grant.Audiences)}]; code from an unreviewed change can then act with this grant",
            "remove 'allow_pull_requests' and serve pull requests from a separate rule with stage 'read'"));
    }

    // TB2107: audiences that look like a cloud's token-exchange audience but are not, and AWS rules without the AWS audience.
    private static void CheckCloudAudiences(TrustRule rule, List<RuleDiagnostic> findings)
    {
        foreach (var audience in rule.Grant.Audiences)
        {
            if (LooksLikeButIsNot(audience, AwsAudiences) is { } aws)
            {
                findings.Add(Finding(RuleErrors.CloudAudience, RuleSeverity.Warning, rule, rule.Location,
                    $"rule '{rule.Id}' grants audience '{audience}', which looks like AWS STS's '{aws}' but is not it; AWS rejects web identity tokens whose audience is not exactly the one registered with the IAM OIDC provider",
                    $"write the audience exactly as '{aws}'"));
            }
            else if (LooksLikeButIsNot(audience, AzureAudiences) is { } azure)
            {
                findings.Add(Finding(RuleErrors.CloudAudience, RuleSeverity.Warning, rule, rule.Location,
                    $"rule '{rule.Id}' grants audience '{audience}', which looks like Azure's federated-credential audience '{azure}' but is not it; Entra ID compares it exactly",
                    $"write the audience exactly as '{azure}'"));
            }
            else if (audience.Contains("iam.googleapis.com", StringComparison.OrdinalIgnoreCase) && !GcpAudienceRegex().IsMatch(audience))
            {
                findings.Add(Finding(RuleErrors.CloudAudience, RuleSeverity.Warning, rule, rule.Location,
                    $"rule '{rule.Id}' grants audience '{audience}', which names Google's IAM but is not a workload identity provider audience",
                    "use '//iam.googleapis.com/projects/<project number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>' (optionally with 'https:' in front)"));
            }
        }

        if (rule.Grant.Claims.Any(c => string.Equals(c.Key, AwsTagsClaim, StringComparison.Ordinal)) &&
            !rule.Grant.Audiences.Contains(AwsAudiences[0], StringComparer.Ordinal))
        {
            findings.Add(Finding(RuleErrors.CloudAudience, RuleSeverity.Warning, rule, rule.Location,
                $"rule '{rule.Id}' writes AWS session tags ('{AwsTagsClaim}') but grants no '{AwsAudiences[0]}' audience, so AWS STS never receives a token from it",
                $"add '{AwsAudiences[0]}' to 'audiences', or drop the '{AwsTagsClaim}' claim"));
        }
    }

    /// <summary>The known audience <paramref name="audience"/> resembles without being it, if any.</summary>
    internal static string? LooksLikeButIsNot(string audience, string[] known)
    {
        if (known.Contains(audience, StringComparer.Ordinal))
        {
            return null;
        }

        var normalized = audience.Trim().TrimEnd('/');
        foreach (var scheme in new[] { "https://", "http://" })
        {
            if (normalized.StartsWith(scheme, StringComparison.OrdinalIgnoreCase) && !known[0].StartsWith("api://", StringComparison.Ordinal))
            {
                normalized = normalized[scheme.Length..];
            }
        }

        foreach (var k in known)
        {
            if (string.Equals(normalized, k, StringComparison.OrdinalIgnoreCase) || Distance(normalized.ToLowerInvariant(), k.ToLowerInvariant(), 2) <= 2)
            {
                return k;
            }
        }

        return null;
    }

    /// <summary>Levenshtein distance, giving up (returning <paramref name="limit"/> + 1) once it is certainly larger.</summary>
    private static int Distance(string a, string b, int limit)
    {
        if (Math.Abs(a.Length - b.Length) > limit)
        {
            return limit + 1;
        }

        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }

    private static bool IsCloudAudience(string audience) =>
        AwsAudiences.Contains(audience, StringComparer.Ordinal) || AzureAudiences.Contains(audience, StringComparer.Ordinal) || GcpAudienceRegex().IsMatch(audience);

    // TB2104, TB2105, TB2106: pairs of rules of one provider.
    private static void CheckPairs(TrustRule[] rules, ProviderDescriptor provider, List<RuleDiagnostic> findings)
    {
        // Only rules that share an audience can compete for a request, so pairs are found through an audience index.
        var byAudience = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        for (var i = 0; i < rules.Length; i++)
        {
            foreach (var audience in rules[i].Grant.Audiences)
            {
                if (!byAudience.TryGetValue(audience, out var list))
                {
                    byAudience[audience] = list = [];
                }

                list.Add(i);
            }
        }

        // Most rules pin repository ids, and rules pinned to disjoint ids never compete: index them so that a large
        // rule set is not compared pair by pair.
        var repositoryIds = rules.Select(r => RepositoryIds(r, provider)).ToArray();
        var byRepository = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        var unpinned = new List<int>();
        for (var i = 0; i < rules.Length; i++)
        {
            if (repositoryIds[i] is not { } ids)
            {
                unpinned.Add(i);
                continue;
            }

            foreach (var id in ids)
            {
                if (!byRepository.TryGetValue(id, out var list))
                {
                    byRepository[id] = list = [];
                }

                list.Add(i);
            }
        }

        var prEvents = rules.Select(r => PullRequestEventsAdmitted(r, provider)).ToArray();
        var pullRequestCloudReported = new HashSet<(int, string)>();
        for (var later = 0; later < rules.Length; later++)
        {
            var l = rules[later];
            var candidates = repositoryIds[later] is { } ids
                ? ids.SelectMany(id => byRepository[id]).Concat(unpinned)
                : l.Grant.Audiences.SelectMany(a => byAudience[a]);
            var partners = candidates
                .Where(i => i != later && rules[i].Grant.Audiences.Any(a => l.Grant.Audiences.Contains(a, StringComparer.Ordinal)))
                .Distinct()
                .Order()
                .ToList();
            var shadowed = false;
            foreach (var other in partners)
            {
                var o = rules[other];
                if (prEvents[later].Count > 0)
                {
                    CheckPullRequestCloudAudience(l, later, o, prEvents[later], provider, findings, pullRequestCloudReported);
                }

                if (other > later || shadowed || Disjoint(o, l, provider, guard: true))
                {
                    continue;
                }

                var shared = l.Grant.Audiences.Where(a => o.Grant.Audiences.Contains(a, StringComparer.Ordinal)).ToList();
                var guardLetsThrough = IsGuarded(o) && prEvents[later].Count > 0;
                if (shared.Count == l.Grant.Audiences.Count && !guardLetsThrough && Broader(o, l))
                {
                    shadowed = true;
                    findings.Add(Finding(RuleErrors.Shadowed, RuleSeverity.Warning, l, l.Location,
                        $"rule '{l.Id}' can never decide: the earlier rule '{o.Id}' ({o.Location}) matches every token this rule matches and grants all of its audiences [{string.Join(", ", l.Grant.Audiences)}], and the first such rule decides",
                        $"move '{l.Id}' above '{o.Id}' if it is the narrower rule, or delete it"));
                }
                else if (GrantSignature(o.Grant) != GrantSignature(l.Grant))
                {
                    findings.Add(Finding(RuleErrors.Overlap, RuleSeverity.Warning, l, l.Location,
                        $"rules '{o.Id}' ({o.Location}) and '{l.Id}' can match the same token (no condition of one rules out the other) and both grant [{string.Join(", ", shared)}], with different grants ({GrantDifference(o.Grant, l.Grant)}); for such a token and audience '{o.Id}' decides because it comes first, so a request for what only '{l.Id}' grants is refused",
                        $"if '{o.Id}' should not serve these tokens, add a condition to it that rules them out (on ref, event or environment, for example); otherwise give the two rules distinct audiences or merge them"));
                }
            }
        }
    }

    /// <summary>The repository ids a rule is pinned to by literal values, or null when it is not pinned.</summary>
    private static HashSet<string>? RepositoryIds(TrustRule rule, ProviderDescriptor provider)
    {
        var source = provider.Vocabulary.Neutral("repository_id")?.Source;
        HashSet<string>? ids = null;
        foreach (var c in rule.Conditions.Where(c => !c.Accessor.IsDerived && c.Accessor.Source == source && c.Condition.FiniteValues is not null))
        {
            var values = c.Condition.FiniteValues!.ToHashSet(StringComparer.Ordinal);
            if (ids is null)
            {
                ids = values;
            }
            else
            {
                ids.IntersectWith(values);
            }
        }

        return ids;
    }

    private static void CheckPullRequestCloudAudience(TrustRule pr, int prIndex, TrustRule privileged, IReadOnlyList<string> events, ProviderDescriptor provider, List<RuleDiagnostic> findings, HashSet<(int, string)> reported)
    {
        if (privileged.Grant.Stage == TrustRule.ReadStage || privileged.AllowPullRequests)
        {
            return;
        }

        var subject = pr.Grant.Subject;
        if (!string.Equals(subject.Source, privileged.Grant.Subject.Source, StringComparison.Ordinal) ||
            subject.Placeholders.Any(p => p is "stage" or "rule"))
        {
            return;
        }

        // The privileged rule never sees pull-request tokens (runtime guard), so its event conditions say nothing
        // about whether the two rules serve the same repository: compare the other conditions only.
        if (Disjoint(pr, privileged, provider, guard: false, ignoreEvent: true))
        {
            return;
        }

        foreach (var audience in pr.Grant.Audiences.Where(a => IsCloudAudience(a) && privileged.Grant.Audiences.Contains(a, StringComparer.Ordinal)))
        {
            if (reported.Add((prIndex, audience)))
            {
                findings.Add(Finding(RuleErrors.PullRequestCloudAudience, RuleSeverity.Error, pr, pr.Location,
                    $"rule '{pr.Id}' gives tokens from {string.Join(", ", events)} events the audience '{audience}' with subject '{subject.Source}', the same subject rule '{privileged.Id}' ({privileged.Location}) issues for stage '{privileged.Grant.Stage}'; a cloud trust policy keys on 'sub' and 'aud' and cannot tell the pull request from the {privileged.Grant.Stage}",
                    $"give '{pr.Id}' a distinct subject (for example ending in ':pr' or containing '{{stage}}'), or do not grant '{audience}' to pull-request tokens"));
            }
        }
    }

    /// <summary>A non-read rule without the opt-in: the runtime guard keeps pull-request tokens away from it.</summary>
    private static bool IsGuarded(TrustRule rule) => rule.Grant.Stage != TrustRule.ReadStage && !rule.AllowPullRequests;

    /// <summary>The provider's pull-request events that this rule can serve, after its conditions and the runtime guard.</summary>
    internal static IReadOnlyList<string> PullRequestEventsAdmitted(TrustRule rule, ProviderDescriptor provider)
    {
        var eventAccessor = provider.Vocabulary.Neutral("event");
        if (eventAccessor is null || IsGuarded(rule))
        {
            return [];
        }

        var onEvent = rule.Conditions.Where(c => c.Accessor.ReadsOnlySource && c.Accessor.Source == eventAccessor.Source).ToList();
        return [.. provider.Vocabulary.PullRequestEvents.Order(StringComparer.Ordinal).Where(e => onEvent.All(c => Accepts(c, e)))];
    }

    /// <summary>True when a token whose only relevant claim is <c>Source = raw</c> satisfies the condition.</summary>
    private static bool Accepts(ClaimCondition c, string raw) =>
        c.Accessor.ReadFromSource(raw) is { } value && c.Condition.Matches(value);

    /// <summary>The raw claim values a condition admits, when it lists values and each maps to one raw value.</summary>
    private static List<string>? RawValues(ClaimCondition c)
    {
        if (c.Condition.FiniteValues is not { } values || !c.Accessor.ReadsOnlySource)
        {
            return null;
        }

        var raw = new List<string>(values.Count);
        foreach (var v in values)
        {
            if (c.Accessor.ToSourceValue(v) is not { } r)
            {
                return null;
            }

            raw.Add(r);
        }

        return raw;
    }

    /// <summary>True only when no token can satisfy both rules (conservative: false when unsure).</summary>
    private static bool Disjoint(TrustRule a, TrustRule b, ProviderDescriptor provider, bool guard, bool ignoreEvent = false)
    {
        var eventSource = provider.Vocabulary.Neutral("event")?.Source;
        foreach (var ca in a.Conditions)
        {
            foreach (var cb in b.Conditions)
            {
                if (ignoreEvent && (ca.Accessor.Source == eventSource || cb.Accessor.Source == eventSource))
                {
                    continue;
                }

                if (Excludes(ca, cb) || Excludes(cb, ca))
                {
                    return true;
                }
            }
        }

        if (guard)
        {
            // A guarded rule never serves pull-request tokens; a rule that serves only those cannot meet it.
            if ((IsGuarded(a) && ServesOnlyPullRequests(b, provider)) || (IsGuarded(b) && ServesOnlyPullRequests(a, provider)))
            {
                return true;
            }
        }

        return false;
    }

    private static bool ServesOnlyPullRequests(TrustRule rule, ProviderDescriptor provider)
    {
        var eventAccessor = provider.Vocabulary.Neutral("event");
        if (eventAccessor is null)
        {
            return false;
        }

        return rule.Conditions.Any(c => c.Accessor.Source == eventAccessor.Source && RawValues(c) is { Count: > 0 } raw &&
            raw.All(provider.Vocabulary.PullRequestEvents.Contains));
    }

    /// <summary>True when the values <paramref name="listing"/> lists all fail <paramref name="other"/>.</summary>
    private static bool Excludes(ClaimCondition listing, ClaimCondition other)
    {
        if (listing.Condition.FiniteValues is { } values && listing.Accessor.Identity == other.Accessor.Identity)
        {
            return values.All(v => !other.Condition.Matches(v));
        }

        if (listing.Accessor.ReadsOnlySource && other.Accessor.ReadsOnlySource && listing.Accessor.Source == other.Accessor.Source &&
            RawValues(listing) is { } raw)
        {
            return raw.All(r => !Accepts(other, r));
        }

        // GitLab's branch and tag: both read 'ref', one only when ref_type is 'branch', the other when it is 'tag'.
        return listing.Accessor is ClaimAccessor.GuardedAccessor g1 && other.Accessor is ClaimAccessor.GuardedAccessor g2 &&
            g1.GuardClaim == g2.GuardClaim && g1.GuardValue != g2.GuardValue;
    }

    /// <summary>True when every token that satisfies <paramref name="narrow"/>'s conditions satisfies <paramref name="broad"/>'s.</summary>
    private static bool Broader(TrustRule broad, TrustRule narrow) =>
        broad.Conditions.All(cb => narrow.Conditions.Any(cn => Implies(cn, cb)));

    private static bool Implies(ClaimCondition narrow, ClaimCondition broad)
    {
        if (narrow.Accessor.Identity == broad.Accessor.Identity)
        {
            if (narrow.Condition.Describe() == broad.Condition.Describe())
            {
                return true;
            }

            if (narrow.Condition.FiniteValues is { } values)
            {
                return values.All(broad.Condition.Matches);
            }
        }

        return narrow.Accessor.ReadsOnlySource && broad.Accessor.ReadsOnlySource && narrow.Accessor.Source == broad.Accessor.Source &&
            RawValues(narrow) is { } raw && raw.All(r => Accepts(broad, r));
    }

    private static string GrantSignature(Grant grant)
    {
        var sb = new StringBuilder();
        sb.Append(grant.Stage).Append('\n').Append(grant.Ttl.Ticks).Append('\n').Append(grant.Subject.Source).Append('\n');
        sb.AppendJoin(' ', grant.Audiences.Order(StringComparer.Ordinal)).Append('\n');
        sb.AppendJoin(' ', grant.Scopes.Order(StringComparer.Ordinal)).Append('\n');
        foreach (var (name, value) in grant.Claims)
        {
            sb.Append(name).Append('=');
            AppendClaim(sb, value);
            sb.Append('\n');
        }

        return sb.ToString();
    }

    private static void AppendClaim(StringBuilder sb, ClaimValueTemplate value)
    {
        switch (value)
        {
            case ClaimValueTemplate.Text t:
                sb.Append('"').Append(t.Template.Source).Append('"');
                break;
            case ClaimValueTemplate.List l:
                sb.Append('[');
                foreach (var item in l.Items)
                {
                    AppendClaim(sb, item);
                    sb.Append(',');
                }

                sb.Append(']');
                break;
            case ClaimValueTemplate.Map m:
                sb.Append('{');
                foreach (var (k, item) in m.Entries)
                {
                    sb.Append(k).Append(':');
                    AppendClaim(sb, item);
                    sb.Append(',');
                }

                sb.Append('}');
                break;
        }
    }

    private static string GrantDifference(Grant a, Grant b)
    {
        var parts = new List<string>();
        if (a.Stage != b.Stage)
        {
            parts.Add($"stage '{a.Stage}' vs '{b.Stage}'");
        }

        if (!a.Scopes.Order(StringComparer.Ordinal).SequenceEqual(b.Scopes.Order(StringComparer.Ordinal), StringComparer.Ordinal))
        {
            parts.Add($"scopes [{string.Join(", ", a.Scopes)}] vs [{string.Join(", ", b.Scopes)}]");
        }

        if (a.Ttl != b.Ttl)
        {
            parts.Add($"ttl {RuleCompiler.FormatDuration(a.Ttl)} vs {RuleCompiler.FormatDuration(b.Ttl)}");
        }

        if (a.Subject.Source != b.Subject.Source)
        {
            parts.Add($"subject \"{a.Subject.Source}\" vs \"{b.Subject.Source}\"");
        }

        if (!a.Audiences.Order(StringComparer.Ordinal).SequenceEqual(b.Audiences.Order(StringComparer.Ordinal), StringComparer.Ordinal))
        {
            parts.Add($"audiences [{string.Join(", ", a.Audiences)}] vs [{string.Join(", ", b.Audiences)}]");
        }

        return parts.Count == 0 ? "extra claims differ" : string.Join("; ", parts);
    }

    [GeneratedRegex(@"\A(?:https:)?//iam\.googleapis\.com/projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}\z", RegexOptions.CultureInvariant)]
    private static partial Regex GcpAudienceRegex();
}
