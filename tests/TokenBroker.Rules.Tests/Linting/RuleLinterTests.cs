using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Linting;
using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Tests.Support;

namespace TokenBroker.Rules.Tests.Linting;

/// <summary>
/// Every lint finding, positive and negative. Rules are written in a compact form: one rule per
/// <see cref="Rule"/> call, on the private GitHub issuer 'ghes' unless a test needs a shared one, so that each
/// case isolates the finding it is about.
/// </summary>
[TestFixture]
public sealed class RuleLinterTests
{
    /// <summary>One rule as YAML. <paramref name="when"/> entries are 'claim: condition' lines.</summary>
    private static string Rule(
        string id,
        string[] when,
        string audiences = "[https://deploy.internal]",
        string stage = "deploy",
        string subject = "s:{repository}",
        string provider = "ghes",
        string? scopes = null,
        bool allowPullRequests = false,
        string? extraGrant = null)
    {
        var lines = new List<string> { $"  - id: {id}", $"    provider: {provider}", "    when:" };
        lines.AddRange(when.Select(w => "      " + w));
        lines.Add("    grant:");
        lines.Add($"      audiences: {audiences}");
        lines.Add($"      stage: {stage}");
        lines.Add($"      subject: \"{subject}\"");
        if (scopes is not null)
        {
            lines.Add($"      scopes: {scopes}");
        }

        if (extraGrant is not null)
        {
            lines.Add("      " + extraGrant);
        }

        if (allowPullRequests)
        {
            lines.Add("    allow_pull_requests: true");
        }

        return string.Join("\n", lines) + "\n";
    }

    private static RuleLoadResult Lint(params string[] rules) =>
        RuleLinter.CompileAndLint(TestProviders.All, new RuleLoadOptions(), [new RuleSource(RuleFiles.FileName, "rules:\n" + string.Concat(rules))]);

    /// <summary>The lint findings (TB21xx) of rules that must compile.</summary>
    private static List<RuleDiagnostic> Findings(params string[] rules)
    {
        var result = Lint(rules);
        Assert.That(result.Diagnostics.Where(d => !d.Id.StartsWith("TB21", StringComparison.Ordinal)), Is.Empty, result.Diagnostics.Describe);
        Assert.That(result.Diagnostics, Has.All.Matches<RuleDiagnostic>(d => !string.IsNullOrWhiteSpace(d.Fix) && d.Rule is not null), "every lint finding names its rule and has a fix");
        return [.. result.Diagnostics];
    }

    private static string[] Ids(List<RuleDiagnostic> findings) => [.. findings.Select(f => f.Id)];

    // TB2101 / TB2102: names without ids.

    private static IEnumerable<TestCaseData> IdentityCases()
    {
        static TestCaseData Case(string name, string[] when, string? expected) => new TestCaseData(when, expected).SetArgDisplayNames(name);

        yield return Case("repository by exact name", ["repository: octo-org/payments"], RuleErrors.NameWithoutId);
        yield return Case("repository by a list of names", ["repository: { in: [octo-org/a, octo-org/b] }"], RuleErrors.NameWithoutId);
        yield return Case("repository excluded by name", ["repository_id: { not: \"1\" }", "repository: { not: octo-org/evil }"], RuleErrors.NameWithoutId);
        yield return Case("owner by raw name claim", ["repository_owner: octo-org"], RuleErrors.NameWithoutId);
        yield return Case("actor by name", ["actor: octocat"], RuleErrors.NameWithoutId);
        yield return Case("repository by glob", ["repository: { glob: \"octo-org/*\" }"], RuleErrors.PatternOnIdentityClaim);
        yield return Case("owner by regex", ["owner: { regex: \"octo-.*\" }"], RuleErrors.PatternOnIdentityClaim);
        yield return Case("repository name with its id pinned", ["repository: octo-org/payments", "repository_id: \"900101\""], null);
        yield return Case("repository glob with ids pinned by a list", ["repository: { glob: \"octo-org/*\" }", "repository_id: { in: [\"1\", \"2\"] }"], null);
        yield return Case("owner name with the raw owner id pinned", ["owner: octo-org", "repository_owner_id: \"5001\""], null);
        yield return Case("subject by exact value", ["subject: \"repo:octo-org/payments:ref:refs/heads/main\""], RuleErrors.NameWithoutId);
        yield return Case("subject by glob", ["sub: { glob: \"repo:octo-org/*:ref:refs/heads/main\" }"], RuleErrors.PatternOnIdentityClaim);
        yield return Case("subject glob with the repository id pinned", ["repository_id: \"1\"", "subject: { glob: \"repo:octo-org/payments:*\" }"], null);
        yield return Case("ids only", ["owner_id: \"5001\"", "repository_id: \"900101\""], null);
        yield return Case("glob on a claim that is not an identity", ["ref: { glob: \"refs/heads/*\" }"], null);
        yield return Case("name pinned by a glob id does not count as an id pin", ["repository: octo-org/payments", "repository_id: { glob: \"9*\" }"], RuleErrors.NameWithoutId);
    }

    [TestCaseSource(nameof(IdentityCases))]
    public void NamesWithoutIds_AreReportedAtTheCondition(string[] when, string? expected)
    {
        var findings = Findings(Rule("r1", when));

        if (expected is null)
        {
            Assert.That(findings, Is.Empty, findings.Describe);
        }
        else
        {
            Assert.That(Ids(findings), Is.EqualTo(new[] { expected }), findings.Describe);
            Assert.That(findings[0].Severity, Is.EqualTo(RuleSeverity.Warning));
            Assert.That(findings[0].Location.Line, Is.GreaterThanOrEqualTo(5), "reported at the condition, not the rule");
        }
    }

    // TB2103: the pull-request opt-in.

    [Test]
    public void AllowPullRequests_OnADeployStage_IsAWarningNamingTheEvents()
    {
        var findings = Findings(Rule("r1", ["repository_id: \"1\""], allowPullRequests: true));

        Assert.That(Ids(findings), Is.EqualTo(new[] { RuleErrors.PullRequestOptIn }), findings.Describe);
        Assert.That(findings[0].Message, Does.Contain("pull_request").And.Contain("pull_request_target").And.Contain("stage 'deploy'"));
    }

    [TestCase("event: push", TestName = "AllowPullRequests_WhenEventExcludesPullRequests_IsNotReported")]
    [TestCase("event: { not: { in: [pull_request, pull_request_target, pull_request_review, pull_request_review_comment] } }", TestName = "AllowPullRequests_WhenANegationExcludesEveryPullRequestEvent_IsNotReported")]
    public void AllowPullRequests_WhenNoPullRequestEventCanMatch_IsNotReported(string eventCondition)
    {
        var findings = Findings(Rule("r1", ["repository_id: \"1\"", eventCondition], allowPullRequests: true));

        Assert.That(findings, Is.Empty, findings.Describe);
    }

    [Test]
    public void AllowPullRequests_OnTheReadStage_IsNotReported()
    {
        Assert.That(Findings(Rule("r1", ["repository_id: \"1\""], stage: "read", allowPullRequests: true)), Is.Empty);
    }

    [Test]
    public void GitLabMergeRequestOptIn_IsReportedWithGitLabsEvents()
    {
        var findings = Findings(Rule("r1", ["owner_id: \"72\"", "repository_id: \"4242\""], provider: "gitlab", allowPullRequests: true));

        Assert.That(Ids(findings), Is.EqualTo(new[] { RuleErrors.PullRequestOptIn }));
        Assert.That(findings[0].Message, Does.Contain("merge_request_event"));
    }

    // TB2104: pull-request tokens reaching a cloud audience under the deploy subject.

    [Test]
    public void PullRequestRule_WithTheDeploySubjectForACloudAudience_IsAnErrorThatStopsTheLoad()
    {
        var result = Lint(
            Rule("deploy", ["repository_id: \"1\"", "ref: refs/heads/main"], audiences: "[sts.amazonaws.com]", subject: "repo:{repository}"),
            Rule("pr-plan", ["repository_id: \"1\"", "event: pull_request"], audiences: "[sts.amazonaws.com]", stage: "read", subject: "repo:{repository}"));

        var finding = result.Diagnostics.Single();
        Assert.That(finding.Id, Is.EqualTo(RuleErrors.PullRequestCloudAudience), result.Diagnostics.Describe);
        Assert.That(finding.Severity, Is.EqualTo(RuleSeverity.Error));
        Assert.That(finding.Rule, Is.EqualTo("pr-plan"));
        Assert.That(finding.Message, Does.Contain("'deploy'").And.Contain("sts.amazonaws.com"));
        Assert.That(result.RuleSet, Is.Null, "a lint error stops the load");
    }

    private static IEnumerable<TestCaseData> SafePullRequestRules()
    {
        static TestCaseData Case(string name, string prRule) => new TestCaseData(prRule).SetArgDisplayNames(name);

        yield return Case("a distinct subject", Rule("pr-plan", ["repository_id: \"1\""], audiences: "[sts.amazonaws.com]", stage: "read", subject: "repo:{repository}:pr"));
        yield return Case("a subject with the stage", Rule("pr-plan", ["repository_id: \"1\""], audiences: "[sts.amazonaws.com]", stage: "read", subject: "repo:{repository}:{stage}"));
        yield return Case("another repository", Rule("pr-plan", ["repository_id: \"2\""], audiences: "[sts.amazonaws.com]", stage: "read", subject: "repo:{repository}"));
        yield return Case("no pull-request event", Rule("pr-plan", ["repository_id: \"1\"", "event: schedule"], audiences: "[sts.amazonaws.com]", stage: "read", subject: "repo:{repository}"));
        yield return Case("an audience that is not a cloud's", Rule("pr-plan", ["repository_id: \"1\"", "event: pull_request"], audiences: "[https://deploy.internal]", stage: "read", subject: "repo:{repository}"));
    }

    [TestCaseSource(nameof(SafePullRequestRules))]
    public void PullRequestRule_ThatCannotBeMistakenForTheDeploy_IsNotAnError(string prRule)
    {
        var result = Lint(Rule("deploy", ["repository_id: \"1\"", "ref: refs/heads/main"], audiences: "[sts.amazonaws.com, https://deploy.internal]", subject: "repo:{repository}"), prRule);

        Assert.That(result.Diagnostics.Where(d => d.Id == RuleErrors.PullRequestCloudAudience), Is.Empty, result.Diagnostics.Describe);
        Assert.That(result.RuleSet, Is.Not.Null);
    }

    // TB2105 / TB2106: overlap and shadowing.

    [Test]
    public void TwoRulesThatCanMatchTheSameTokenWithDifferentGrants_Overlap()
    {
        var findings = Findings(
            Rule("publish", ["repository_id: \"1\"", "tag: { regex: \"v[0-9]+\" }"], stage: "publish"),
            Rule("read", ["repository_id: \"1\""], stage: "read"));

        Assert.That(Ids(findings), Is.EqualTo(new[] { RuleErrors.Overlap }), findings.Describe);
        Assert.That(findings[0].Rule, Is.EqualTo("read"));
        Assert.That(findings[0].Message, Does.Contain("'publish'").And.Contain("stage 'publish' vs 'read'").And.Contain("rules.yaml:2:5"));
    }

    private static IEnumerable<TestCaseData> NoOverlap()
    {
        static TestCaseData Case(string name, string first, string second) => new TestCaseData(first, second).SetArgDisplayNames(name);

        yield return Case("different exact refs",
            Rule("a", ["repository_id: \"1\"", "ref: refs/heads/main"]),
            Rule("b", ["repository_id: \"1\"", "ref: refs/heads/dev"], stage: "read"));
        yield return Case("disjoint lists",
            Rule("a", ["repository_id: { in: [\"1\", \"2\"] }"]),
            Rule("b", ["repository_id: { in: [\"3\", \"4\"] }"], stage: "read"));
        yield return Case("a list outside a glob",
            Rule("a", ["ref: { glob: \"refs/tags/*\" }"]),
            Rule("b", ["ref: { in: [refs/heads/main, refs/heads/dev] }"], stage: "read"));
        yield return Case("a branch against a raw ref of another branch",
            Rule("a", ["branch: main"]),
            Rule("b", ["ref: refs/heads/dev"], stage: "read"));
        yield return Case("the same values in another claim are not compared, but disjoint ids are",
            Rule("a", ["repository_id: \"1\"", "environment: production"]),
            Rule("b", ["repository_id: \"2\"", "environment: production"], stage: "read"));
        yield return Case("the runtime guard keeps pull requests from a deploy rule",
            Rule("a", ["repository_id: \"1\""]),
            Rule("b", ["repository_id: \"1\"", "event: { in: [pull_request, pull_request_target] }"], stage: "read"));
        yield return Case("identical grants",
            Rule("a", ["repository_id: \"1\"", "ref: refs/heads/main"]),
            Rule("b", ["repository_id: \"1\"", "environment: production"]));
        yield return Case("distinct audiences",
            Rule("a", ["repository_id: \"1\""], audiences: "[https://a]"),
            Rule("b", ["repository_id: \"1\""], audiences: "[https://b]", stage: "read"));
        yield return Case("another provider",
            Rule("a", ["repository_id: \"1\""]),
            Rule("b", ["owner_id: \"72\"", "repository_id: \"1\""], provider: "gitlab", stage: "read"));
    }

    [TestCaseSource(nameof(NoOverlap))]
    public void RulesThatCannotCompete_DoNotOverlap(string first, string second)
    {
        Assert.That(Findings(first, second), Is.Empty);
    }

    [Test]
    public void GitLabBranchAndTagConditions_NeverOverlap()
    {
        var findings = Findings(
            Rule("a", ["owner_id: \"72\"", "branch: main"], provider: "gitlab"),
            Rule("b", ["owner_id: \"72\"", "tag: { glob: \"v*\" }"], provider: "gitlab", stage: "read"));

        Assert.That(findings, Is.Empty, findings.Describe);
    }

    private static IEnumerable<TestCaseData> Shadowing()
    {
        static TestCaseData Case(string name, string first, string second) => new TestCaseData(first, second).SetArgDisplayNames(name);

        yield return Case("a broader rule first",
            Rule("broad", ["repository_id: \"1\""], stage: "read"),
            Rule("narrow", ["repository_id: \"1\"", "ref: refs/heads/main"]));
        yield return Case("a glob that covers the later literal",
            Rule("broad", ["ref: { glob: \"refs/heads/*\" }"], stage: "read"),
            Rule("narrow", ["ref: refs/heads/main"]));
        yield return Case("a list that covers the later list",
            Rule("broad", ["repository_id: { in: [\"1\", \"2\", \"3\"] }"], audiences: "[https://deploy.internal, https://other]"),
            Rule("narrow", ["repository_id: { in: [\"1\", \"3\"] }"], stage: "publish"));
        yield return Case("a raw ref glob that covers a later branch",
            Rule("broad", ["ref: { glob: \"refs/heads/*\" }"], stage: "read"),
            Rule("narrow", ["branch: main"]));
    }

    [TestCaseSource(nameof(Shadowing))]
    public void ARuleBehindABroaderRuleThatGrantsItsAudiences_IsShadowed(string first, string second)
    {
        var findings = Findings(first, second);

        Assert.That(Ids(findings), Is.EqualTo(new[] { RuleErrors.Shadowed }), findings.Describe);
        Assert.That(findings[0].Rule, Is.EqualTo("narrow"));
        Assert.That(findings[0].Message, Does.Contain("'broad'"));
    }

    [Test]
    public void ANarrowRuleFirst_IsAnOverlapNotAShadow()
    {
        var findings = Findings(
            Rule("narrow", ["repository_id: \"1\"", "ref: refs/heads/main"]),
            Rule("broad", ["repository_id: \"1\""], stage: "read"));

        Assert.That(Ids(findings), Is.EqualTo(new[] { RuleErrors.Overlap }), findings.Describe);
    }

    [Test]
    public void ABroaderRuleThatGrantsFewerAudiences_DoesNotShadow()
    {
        var findings = Findings(
            Rule("broad", ["repository_id: \"1\""], audiences: "[https://a]", stage: "read"),
            Rule("narrow", ["repository_id: \"1\"", "ref: refs/heads/main"], audiences: "[https://a, https://b]"));

        Assert.That(Ids(findings), Is.EqualTo(new[] { RuleErrors.Overlap }), findings.Describe);
    }

    [Test]
    public void ABroaderDeployRule_DoesNotShadowALaterReadRuleForPullRequests()
    {
        // Pull-request tokens skip 'broad' (runtime guard) and reach 'pr-read'; other tokens never do.
        var findings = Findings(
            Rule("broad", ["repository_id: \"1\""]),
            Rule("pr-read", ["repository_id: \"1\"", "ref: { glob: \"refs/pull/*/merge\" }"], stage: "read"));

        Assert.That(Ids(findings), Is.EqualTo(new[] { RuleErrors.Overlap }), findings.Describe);
    }

    // TB2107: cloud audiences.

    private static IEnumerable<TestCaseData> Audiences()
    {
        static TestCaseData Case(string audience, bool reported) => new TestCaseData(audience, reported).SetArgDisplayNames(audience);

        yield return Case("sts.amazonaws.com", false);
        yield return Case("https://sts.amazonaws.com", true);
        yield return Case("sts.amazonaws.com/", true);
        yield return Case("STS.amazonaws.com", true);
        yield return Case("sts.amazonaws.co", true);
        yield return Case("sts.amazonnaws.com", true);
        yield return Case("sts.amazonaws.cm", true);
        yield return Case("api://AzureADTokenExchange", false);
        yield return Case("api://AzureADTokenExchangeUSGov", false);
        yield return Case("api://AzureADTokenexchange", true);
        yield return Case("api://AzureADTokenExchang", true);
        yield return Case("//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/ci-pool/providers/broker", false);
        yield return Case("https://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/ci-pool/providers/broker", false);
        yield return Case("//iam.googleapis.com/projects/my-project/locations/global/workloadIdentityPools/ci-pool/providers/broker", true);
        yield return Case("https://iam.googleapis.com/", true);
        yield return Case("https://deploy.internal/payments", false);
        yield return Case("sts.example.com", false);
    }

    [TestCaseSource(nameof(Audiences))]
    public void CloudLookAlikeAudiences_AreReported(string audience, bool reported)
    {
        var findings = Findings(Rule("r1", ["repository_id: \"1\""], audiences: $"['{audience}']"));

        Assert.That(Ids(findings), Is.EqualTo(reported ? new[] { RuleErrors.CloudAudience } : []), findings.Describe);
    }

    [Test]
    public void AwsSessionTagsWithoutTheAwsAudience_AreReported()
    {
        const string tags = "claims: { \"https://aws.amazon.com/tags\": { principal_tags: { repo: [\"{repository}\"] } } }";

        var without = Findings(Rule("r1", ["repository_id: \"1\""], extraGrant: tags));
        var with = Findings(Rule("r1", ["repository_id: \"1\""], audiences: "[sts.amazonaws.com]", extraGrant: tags));

        Assert.That(Ids(without), Is.EqualTo(new[] { RuleErrors.CloudAudience }), without.Describe);
        Assert.That(without[0].Message, Does.Contain("session tags"));
        Assert.That(with, Is.Empty, with.Describe);
    }

    // Load errors that lint reports too, now with a fix.

    [TestCase("provider: github\n    when:\n      repository_id: \"1\"", "TB2016", TestName = "SharedIssuerWithoutOwnerPin_IsAnErrorWithAFix")]
    [TestCase("provider: ghes\n    when:\n      event: pull_request", "TB2017", TestName = "PullRequestEventForDeploy_IsAnErrorWithAFix")]
    [TestCase("provider: ghes\n    when:\n      repository_id: \"1\"\n    grant:\n      ttl: 2h", "TB2013", TestName = "TtlAboveTheConfiguredMaximum_IsAnErrorWithAFix")]
    public void LoadErrorsThatAreSafetyFindings_CarryAFix(string ruleBody, string id)
    {
        var yaml = ruleBody.Contains("grant:", StringComparison.Ordinal)
            ? $"rules:\n  - id: r1\n    {ruleBody}\n      audiences: [a]\n      stage: deploy\n      subject: s\n"
            : $"rules:\n  - id: r1\n    {ruleBody}\n    grant:\n      audiences: [a]\n      stage: deploy\n      subject: s\n";

        var result = RuleLinter.CompileAndLint(TestProviders.All, new RuleLoadOptions(), [new RuleSource(RuleFiles.FileName, yaml)]);

        var finding = result.Diagnostics.Single();
        Assert.That(finding.Id, Is.EqualTo(id), result.Diagnostics.Describe);
        Assert.That(finding.Fix, Is.Not.Null.And.Not.Empty);
        Assert.That(result.RuleSet, Is.Null);
    }

    [Test]
    public void TtlMaximum_FollowsTheConfiguredOption()
    {
        var yaml = "rules:\n  - id: r1\n    provider: ghes\n    when:\n      repository_id: \"1\"\n    grant:\n      audiences: [a]\n      stage: deploy\n      subject: s\n      ttl: 20m\n";

        var loose = RuleLinter.CompileAndLint(TestProviders.All, new RuleLoadOptions(), [new RuleSource(RuleFiles.FileName, yaml)]);
        var tight = RuleLinter.CompileAndLint(TestProviders.All, new RuleLoadOptions { MaxTtl = TimeSpan.FromMinutes(15) }, [new RuleSource(RuleFiles.FileName, yaml)]);

        Assert.That(loose.Diagnostics, Is.Empty);
        Assert.That(tight.Diagnostics.Select(d => d.Id), Is.EqualTo(new[] { RuleErrors.TtlAboveMaximum }));
        Assert.That(tight.Diagnostics[0].Fix, Does.Contain("15m"));
    }

    // The sample rules.

    [Test]
    public void SampleRules_HaveNoLintErrors_AndOneDocumentedOverlapWarning()
    {
        var result = RuleLinter.CompileAndLint(TestProviders.All, new RuleLoadOptions(), RuleFiles.SampleSources());

        Assert.That(result.RuleSet, Is.Not.Null, result.Diagnostics.Describe);
        Assert.That(result.Diagnostics.Select(d => (d.Id, d.Severity, d.Rule)), Is.EqualTo(new[] { (RuleErrors.Overlap, RuleSeverity.Warning, (string?)"payments-ci-read") }), result.Diagnostics.Describe);
    }

    [Test]
    public void Findings_AreOrderedByPosition()
    {
        var findings = Findings(
            Rule("a", ["repository: { glob: \"x/*\" }"], audiences: "['https://sts.amazonaws.com']"),
            Rule("b", ["actor: octocat"]));

        Assert.That(findings.Select(f => f.Location.Line), Is.Ordered, findings.Describe);
        Assert.That(findings, Has.Count.EqualTo(3), findings.Describe);
    }

    [Test]
    public void ALargeRuleSet_WithOneRulePerRepository_LintsQuickly()
    {
        var rules = Enumerable.Range(1, 5000).Select(i => Rule($"r{i}", [$"repository_id: \"{i}\"", "ref: refs/heads/main"], audiences: "[sts.amazonaws.com]", subject: $"s{i}")).ToArray();

        var compiled = RuleFiles.Compile("rules:\n" + string.Concat(rules));
        Assert.That(compiled.RuleSet, Is.Not.Null, compiled.Diagnostics.Take(5).Describe);

        var watch = System.Diagnostics.Stopwatch.StartNew();
        var findings = new RuleLinter(TestProviders.All).Lint(compiled.RuleSet!);
        watch.Stop();

        Assert.That(findings, Is.Empty, findings.Take(5).Describe);
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)), "rules pinned to distinct repositories are never compared pair by pair");
    }
}
