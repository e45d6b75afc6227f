using System.Collections.Frozen;

namespace TokenBroker.Rules.Providers;

/// <summary>
/// The claims one provider kind defines, and how the provider-neutral names map onto them.
/// A neutral name either aliases a raw claim or is derived from two claims (for example GitLab's
/// <c>branch</c> is <c>ref</c> when <c>ref_type</c> is <c>branch</c>).
/// </summary>
public sealed class ClaimVocabulary
{
    private readonly FrozenDictionary<string, NeutralClaim> _neutral;
    private readonly FrozenSet<string> _raw;

    public ClaimVocabulary(IEnumerable<string> rawClaims, IEnumerable<NeutralClaim> neutralClaims, IEnumerable<string> pullRequestEvents)
    {
        _raw = rawClaims.ToFrozenSet(StringComparer.Ordinal);
        _neutral = neutralClaims.ToFrozenDictionary(n => n.Name, StringComparer.Ordinal);
        PullRequestEvents = pullRequestEvents.ToFrozenSet(StringComparer.Ordinal);
    }

    /// <summary>Values of the neutral <c>event</c> claim that mean the job runs for a pull or merge request.</summary>
    public FrozenSet<string> PullRequestEvents { get; }

    /// <summary>The raw claim names this provider defines.</summary>
    public IEnumerable<string> RawClaims => _raw;

    /// <summary>The neutral names this provider maps.</summary>
    public IEnumerable<NeutralClaim> NeutralClaims => _neutral.Values;

    /// <summary>The prefix that always names a raw claim, even one whose name a neutral name shadows (e.g. GitLab's <c>raw.ref</c>).</summary>
    public const string RawPrefix = "raw.";

    /// <summary>
    /// Resolves a name used in a rule to a claim accessor, or null when the provider does not define it. Neutral
    /// names win over raw claims of the same name; <c>raw.NAME</c> always means the raw claim.
    /// </summary>
    public ClaimAccessor? Resolve(string name)
    {
        if (name.StartsWith(RawPrefix, StringComparison.Ordinal))
        {
            var raw = name[RawPrefix.Length..];
            return _raw.Contains(raw) ? ClaimAccessor.Raw(raw) : null;
        }

        if (_neutral.TryGetValue(name, out var neutral))
        {
            return neutral.Accessor;
        }

        return _raw.Contains(name) ? ClaimAccessor.Raw(name) : null;
    }

    /// <summary>The accessor for a neutral name, or null when the provider does not map it.</summary>
    public ClaimAccessor? Neutral(string name) => _neutral.TryGetValue(name, out var n) ? n.Accessor : null;

    public static ClaimVocabulary GitHub { get; } = new(
        [
            "sub", "ref", "ref_type", "ref_protected", "sha", "repository", "repository_id", "repository_owner",
            "repository_owner_id", "repository_visibility", "run_id", "run_number", "run_attempt", "runner_environment",
            "actor", "actor_id", "workflow", "workflow_ref", "workflow_sha", "job_workflow_ref", "job_workflow_sha",
            "event_name", "head_ref", "base_ref", "environment", "environment_node_id", "enterprise", "enterprise_id",
            "check_run_id",
        ],
        [
            new("repository", ClaimAccessor.Raw("repository")),
            new("repository_id", ClaimAccessor.Raw("repository_id")),
            new("owner", ClaimAccessor.Raw("repository_owner")),
            new("owner_id", ClaimAccessor.Raw("repository_owner_id")),
            new("ref", ClaimAccessor.Raw("ref")),
            new("branch", ClaimAccessor.PrefixStripped("ref", "refs/heads/")),
            new("tag", ClaimAccessor.PrefixStripped("ref", "refs/tags/")),
            new("ref_type", ClaimAccessor.Raw("ref_type")),
            new("protected", ClaimAccessor.Raw("ref_protected")),
            new("environment", ClaimAccessor.Raw("environment")),
            new("event", ClaimAccessor.Raw("event_name")),
            new("workflow_ref", ClaimAccessor.Raw("job_workflow_ref")),
            new("sha", ClaimAccessor.Raw("sha")),
            new("actor", ClaimAccessor.Raw("actor")),
            new("actor_id", ClaimAccessor.Raw("actor_id")),
            new("run_id", ClaimAccessor.Raw("run_id")),
            new("visibility", ClaimAccessor.Raw("repository_visibility")),
            new("runner_environment", ClaimAccessor.Raw("runner_environment")),
            new("subject", ClaimAccessor.Raw("sub")),
        ],
        ["pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment"]);

    public static ClaimVocabulary GitLab { get; } = new(
        [
            "sub", "namespace_id", "namespace_path", "project_id", "project_path", "user_id", "user_login", "user_email",
            "user_access_level", "pipeline_id", "pipeline_source", "job_id", "ref", "ref_type", "ref_path", "ref_protected",
            "environment", "environment_protected", "deployment_tier", "environment_action", "runner_id",
            "runner_environment", "sha", "ci_config_ref_uri", "ci_config_sha", "project_visibility",
        ],
        [
            new("repository", ClaimAccessor.Raw("project_path")),
            new("repository_id", ClaimAccessor.Raw("project_id")),
            new("owner", ClaimAccessor.Raw("namespace_path")),
            new("owner_id", ClaimAccessor.Raw("namespace_id")),
            new("ref", ClaimAccessor.Raw("ref_path")),
            new("branch", ClaimAccessor.When("ref", "ref_type", "branch")),
            new("tag", ClaimAccessor.When("ref", "ref_type", "tag")),
            new("ref_type", ClaimAccessor.Raw("ref_type")),
            new("protected", ClaimAccessor.Raw("ref_protected")),
            new("environment", ClaimAccessor.Raw("environment")),
            new("event", ClaimAccessor.Raw("pipeline_source")),
            new("workflow_ref", ClaimAccessor.Raw("ci_config_ref_uri")),
            new("sha", ClaimAccessor.Raw("sha")),
            new("actor", ClaimAccessor.Raw("user_login")),
            new("actor_id", ClaimAccessor.Raw("user_id")),
            new("run_id", ClaimAccessor.Raw("pipeline_id")),
            new("visibility", ClaimAccessor.Raw("project_visibility")),
            new("runner_environment", ClaimAccessor.Raw("runner_environment")),
            new("subject", ClaimAccessor.Raw("sub")),
        ],
        ["merge_request_event", "external_pull_request_event"]);

    /// <summary>
    /// A generic OIDC vocabulary: <c>sub</c> plus the claims configuration declares, and neutral names mapped
    /// one-to-one onto raw claims.
    /// </summary>
    public static ClaimVocabulary ForOidc(IEnumerable<string> claims, IReadOnlyDictionary<string, string> neutralToRaw, IEnumerable<string> pullRequestEvents)
    {
        var raw = new HashSet<string>(claims, StringComparer.Ordinal) { "sub" };
        var neutral = neutralToRaw.Select(kv => new NeutralClaim(kv.Key, ClaimAccessor.Raw(kv.Value))).ToList();
        raw.UnionWith(neutralToRaw.Values);
        if (!neutralToRaw.ContainsKey("subject"))
        {
            neutral.Add(new NeutralClaim("subject", ClaimAccessor.Raw("sub")));
        }

        return new ClaimVocabulary(raw, neutral, pullRequestEvents);
    }
}

/// <summary>A provider-neutral claim name and how to read it from a token.</summary>
public sealed record NeutralClaim(string Name, ClaimAccessor Accessor);
