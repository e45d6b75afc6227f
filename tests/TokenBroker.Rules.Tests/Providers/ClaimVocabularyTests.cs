using TokenBroker.Rules.Providers;
using TokenBroker.Rules.Tests.Support;

namespace TokenBroker.Rules.Tests.Providers;

[TestFixture]
public sealed class ClaimVocabularyTests
{
    private static IEnumerable<TestCaseData> NeutralNames()
    {
        static TestCaseData N(string provider, string neutral, string raw, bool derived = false) =>
            new TestCaseData(provider, neutral, raw, derived).SetArgDisplayNames($"{provider} {neutral}");

        foreach (var (neutral, github, gitlab) in new[]
        {
            ("repository", "repository", "project_path"),
            ("repository_id", "repository_id", "project_id"),
            ("owner", "repository_owner", "namespace_path"),
            ("owner_id", "repository_owner_id", "namespace_id"),
            ("ref", "ref", "ref_path"),
            ("ref_type", "ref_type", "ref_type"),
            ("protected", "ref_protected", "ref_protected"),
            ("environment", "environment", "environment"),
            ("event", "event_name", "pipeline_source"),
            ("workflow_ref", "job_workflow_ref", "ci_config_ref_uri"),
            ("sha", "sha", "sha"),
            ("actor", "actor", "user_login"),
            ("actor_id", "actor_id", "user_id"),
            ("run_id", "run_id", "pipeline_id"),
            ("visibility", "repository_visibility", "project_visibility"),
            ("runner_environment", "runner_environment", "runner_environment"),
            ("subject", "sub", "sub"),
        })
        {
            yield return N("github", neutral, github);
            yield return N("gitlab", neutral, gitlab);
        }

        yield return N("github", "branch", "ref", derived: true);
        yield return N("github", "tag", "ref", derived: true);
        yield return N("gitlab", "branch", "ref", derived: true);
        yield return N("gitlab", "tag", "ref", derived: true);
    }

    private static ClaimVocabulary Vocabulary(string provider) => provider == "github" ? ClaimVocabulary.GitHub : ClaimVocabulary.GitLab;

    [TestCaseSource(nameof(NeutralNames))]
    public void Resolve_NeutralName_ReadsTheProvidersOwnClaim(string provider, string neutral, string raw, bool derived)
    {
        var accessor = Vocabulary(provider).Resolve(neutral);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(accessor, Is.Not.Null);
            Assert.That(accessor!.Source, Is.EqualTo(raw));
            Assert.That(accessor.IsDerived, Is.EqualTo(derived));
            Assert.That(Vocabulary(provider).Neutral(neutral)?.Source, Is.EqualTo(raw));
        }
    }

    [Test]
    public void Resolve_NeutralNamesOnFixtures_ReadTheSameFactsForBothProviders()
    {
        var github = Fixtures.GitHub("push_main_production");
        var gitlab = Fixtures.GitLab("protected_production_apply");
        string?[] Read(ClaimVocabulary v, IJobClaims c) =>
            [.. new[] { "repository", "owner_id", "ref", "branch", "environment", "event" }.Select(n => v.Resolve(n)!.Read(c))];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(Read(ClaimVocabulary.GitHub, github), Is.EqualTo(new[] { "octo-org/payments", "5001", "refs/heads/main", "main", "production", "push" }));
            Assert.That(Read(ClaimVocabulary.GitLab, gitlab), Is.EqualTo(new[] { "platform/infra", "72", "refs/heads/main", "main", "production", "push" }));
        }
    }

    private static IEnumerable<TestCaseData> RawClaims()
    {
        static TestCaseData C(string provider, string claim, bool defined) => new TestCaseData(provider, claim, defined).SetArgDisplayNames($"{provider} {claim}");

        yield return C("github", "job_workflow_ref", true);
        yield return C("github", "event_name", true);
        yield return C("github", "repository_owner_id", true);
        yield return C("github", "namespace_id", false);
        yield return C("github", "pipeline_source", false);
        yield return C("github", "Repository", false);
        yield return C("github", "", false);
        yield return C("gitlab", "namespace_id", true);
        yield return C("gitlab", "environment_protected", true);
        yield return C("gitlab", "ci_config_ref_uri", true);
        yield return C("gitlab", "job_workflow_ref", false);
        yield return C("gitlab", "repository_owner_id", false);
        yield return C("gitlab", "event_name", false);
    }

    [TestCaseSource(nameof(RawClaims))]
    public void Resolve_RawClaim_IsDefinedOnlyForItsProvider(string provider, string claim, bool defined)
    {
        var accessor = Vocabulary(provider).Resolve(claim);

        Assert.That(accessor?.Source, defined ? Is.EqualTo(claim) : Is.Null);
    }

    private static IEnumerable<TestCaseData> GitHubRefs()
    {
        static TestCaseData R(string reference, string? branch, string? tag) => new TestCaseData(reference, branch, tag).SetArgDisplayNames(reference);

        yield return R("refs/heads/main", "main", null);
        yield return R("refs/heads/feature/x", "feature/x", null);
        yield return R("refs/pull/77/merge", null, null);
        yield return R("refs/tags/v2.4.0", null, "v2.4.0");
        yield return R("refs/heads/", null, null);
        yield return R("refs/tags/", null, null);
        yield return R("main", null, null);
        yield return R("refs/heads/refs/tags/v1", "refs/tags/v1", null);
        yield return R("REFS/HEADS/main", null, null);
    }

    [TestCaseSource(nameof(GitHubRefs))]
    public void GitHubBranchAndTag_AreDerivedFromRefPrefix(string reference, string? branch, string? tag)
    {
        var claims = Fixtures.Claims(("ref", reference), ("ref_type", "branch"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ClaimVocabulary.GitHub.Resolve("branch")!.Read(claims), Is.EqualTo(branch));
            Assert.That(ClaimVocabulary.GitHub.Resolve("tag")!.Read(claims), Is.EqualTo(tag));
        }
    }

    [Test]
    public void GitHubBranch_WithoutRefClaim_IsAbsent() =>
        Assert.That(ClaimVocabulary.GitHub.Resolve("branch")!.Read(Fixtures.Claims(("ref_type", "branch"))), Is.Null);

    private static IEnumerable<TestCaseData> GitLabRefs()
    {
        static TestCaseData R(string name, string? refType, string? branch, string? tag) =>
            new TestCaseData(refType, branch, tag).SetArgDisplayNames(name);

        yield return R("branch", "branch", "main", null);
        yield return R("tag", "tag", null, "main");
        yield return R("no ref_type", null, null, null);
        yield return R("ref_type in other case", "Branch", null, null);
        yield return R("unknown ref_type", "merge_request", null, null);
    }

    [TestCaseSource(nameof(GitLabRefs))]
    public void GitLabBranchAndTag_AreRefOnlyWhenRefTypeSaysSo(string? refType, string? branch, string? tag)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal) { ["ref"] = "main", ["ref_path"] = "refs/heads/main" };
        if (refType is not null)
        {
            values["ref_type"] = refType;
        }

        var claims = new DictionaryJobClaims(values);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ClaimVocabulary.GitLab.Resolve("branch")!.Read(claims), Is.EqualTo(branch));
            Assert.That(ClaimVocabulary.GitLab.Resolve("tag")!.Read(claims), Is.EqualTo(tag));
        }
    }

    private static IEnumerable<TestCaseData> FixtureBranches()
    {
        yield return new TestCaseData("github", "push_main_production", "main").SetArgDisplayNames("github push_main_production");
        yield return new TestCaseData("github", "pull_request_from_fork", null).SetArgDisplayNames("github pull_request_from_fork");
        yield return new TestCaseData("github", "pull_request_target_on_main", "main").SetArgDisplayNames("github pull_request_target_on_main");
        yield return new TestCaseData("github", "tag_release_immutable_sub", null).SetArgDisplayNames("github tag_release_immutable_sub");
        yield return new TestCaseData("gitlab", "protected_main_staging", "main").SetArgDisplayNames("gitlab protected_main_staging");
        yield return new TestCaseData("gitlab", "merge_request_pipeline", "feature-x").SetArgDisplayNames("gitlab merge_request_pipeline");
    }

    [TestCaseSource(nameof(FixtureBranches))]
    public void Branch_OnFixtures_IsTheBranchNameOrAbsent(string provider, string fixture, string? branch)
    {
        var claims = provider == "github" ? Fixtures.GitHub(fixture) : Fixtures.GitLab(fixture);

        Assert.That(Vocabulary(provider).Resolve("branch")!.Read(claims), Is.EqualTo(branch));
    }

    [Test]
    public void PullRequestEvents_NameEachProvidersPullRequestTriggers()
    {
        using (Assert.EnterMultipleScope())
        {
            Assert.That(ClaimVocabulary.GitHub.PullRequestEvents, Is.EquivalentTo(new[] { "pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment" }));
            Assert.That(ClaimVocabulary.GitLab.PullRequestEvents, Is.EquivalentTo(new[] { "merge_request_event", "external_pull_request_event" }));
        }
    }

    [Test]
    public void ForOidc_DeclaresSubAndMapsNeutralNamesOneToOne()
    {
        var vocabulary = ClaimVocabulary.ForOidc(
            ["team"],
            new Dictionary<string, string>(StringComparer.Ordinal) { ["owner_id"] = "tenant_id", ["event"] = "trigger" },
            ["review"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(vocabulary.Resolve("sub")?.Source, Is.EqualTo("sub"));
            Assert.That(vocabulary.Resolve("subject")?.Source, Is.EqualTo("sub"));
            Assert.That(vocabulary.Resolve("team")?.Source, Is.EqualTo("team"));
            Assert.That(vocabulary.Resolve("owner_id")?.Source, Is.EqualTo("tenant_id"));
            Assert.That(vocabulary.Resolve("tenant_id")?.Source, Is.EqualTo("tenant_id"));
            Assert.That(vocabulary.Resolve("repository"), Is.Null);
            Assert.That(vocabulary.PullRequestEvents, Is.EquivalentTo(new[] { "review" }));
        }
    }

    [Test]
    public void RawPrefix_ReachesRawClaimsThatNeutralNamesShadow()
    {
        var claims = new TokenBroker.Rules.Providers.DictionaryJobClaims(new Dictionary<string, string>
        {
            ["ref"] = "main",
            ["ref_path"] = "refs/heads/main",
        });

        Assert.That(ClaimVocabulary.GitLab.Resolve("ref")!.Read(claims), Is.EqualTo("refs/heads/main"));
        Assert.That(ClaimVocabulary.GitLab.Resolve("raw.ref")!.Read(claims), Is.EqualTo("main"));
        Assert.That(ClaimVocabulary.GitLab.Resolve("raw.repository"), Is.Null, "raw. names only raw claims");
        Assert.That(ClaimVocabulary.GitHub.Resolve("raw.workflow_ref")!.Source, Is.EqualTo("workflow_ref"));
    }
}
