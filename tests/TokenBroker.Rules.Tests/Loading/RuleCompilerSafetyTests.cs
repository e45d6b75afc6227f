using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Tests.Support;
using static TokenBroker.Rules.Tests.Support.DiagnosticFormatting;

namespace TokenBroker.Rules.Tests.Loading;

/// <summary>
/// The two safe-by-default load checks: a shared issuer's rule must pin the owner id to literals (TB2016), and a
/// rule that names pull-request events for a non-read stage must opt in (TB2017). Both are reported at the rule's
/// <c>when</c> mapping, which here always starts at line 5, column 7.
/// </summary>
[TestFixture]
public sealed class RuleCompilerSafetyTests
{
    private static string Rule(string provider, string[] when, string stage = "deploy", bool? allowPullRequests = null)
    {
        var lines = new List<string> { "rules:", "  - id: r1", $"    provider: {provider}", "    when:" };
        lines.AddRange(when.Select(w => "      " + w));
        lines.AddRange(["    grant:", "      audiences: [a]", $"      stage: {stage}", "      subject: s"]);
        if (allowPullRequests is { } allow)
        {
            lines.Add($"    allow_pull_requests: {(allow ? "true" : "false")}");
        }

        return string.Join("\n", lines) + "\n";
    }

    private static IEnumerable<TestCaseData> OwnerPins()
    {
        static TestCaseData Pin(string name, string provider, bool pinned, params string[] when) =>
            new TestCaseData(provider, when, pinned).SetArgDisplayNames(name);

        yield return Pin("github exact owner_id", "github", true, "owner_id: \"5001\"");
        yield return Pin("github owner_id in a list", "github", true, "owner_id: { in: [\"5001\", \"5002\"] }");
        yield return Pin("github raw repository_owner_id", "github", true, "repository_owner_id: \"5001\"");
        yield return Pin("github owner_id pin after other conditions", "github", true, "repository_id: \"900101\"", "ref: refs/heads/main", "owner_id: \"5001\"");
        yield return Pin("github owner_id glob", "github", false, "owner_id: { glob: \"5*\" }");
        yield return Pin("github owner_id glob without wildcard", "github", false, "owner_id: { glob: \"5001\" }");
        yield return Pin("github owner_id regex", "github", false, "owner_id: { regex: \"5001\" }");
        yield return Pin("github owner_id not", "github", false, "owner_id: { not: \"666\" }");
        yield return Pin("github owner_id not in", "github", false, "owner_id: { not: { in: [\"666\"] } }");
        yield return Pin("github empty owner_id", "github", false, "owner_id: \"\"");
        yield return Pin("github owner_id in a list with an empty entry", "github", false, "owner_id: { in: [\"5001\", \"\"] }");
        yield return Pin("github owner name instead of id", "github", false, "owner: octo-org");
        yield return Pin("github repository id only", "github", false, "repository_id: \"900101\"");
        yield return Pin("github sub naming the owner", "github", false, "sub: { glob: \"repo:octo-org/*\" }");
        yield return Pin("gitlab exact owner_id", "gitlab", true, "owner_id: \"72\"");
        yield return Pin("gitlab raw namespace_id in a list", "gitlab", true, "namespace_id: { in: [\"72\"] }");
        yield return Pin("gitlab namespace path", "gitlab", false, "namespace_path: platform");
        yield return Pin("gitlab owner_id glob", "gitlab", false, "owner_id: { glob: \"7*\" }");
        yield return Pin("private issuer needs no pin", "ghes", true, "repository_id: \"900101\"");
    }

    [TestCaseSource(nameof(OwnerPins))]
    public void Compile_SharedIssuerRule_IsAcceptedOnlyWhenOwnerIdIsPinnedToLiterals(string provider, string[] when, bool pinned)
    {
        var result = RuleFiles.Compile(Rule(provider, when));

        using (Assert.EnterMultipleScope())
        {
            if (pinned)
            {
                Assert.That(result.Diagnostics, Is.Empty, result.Diagnostics.Describe);
                Assert.That(result.RuleSet, Is.Not.Null);
            }
            else
            {
                Assert.That(result.Diagnostics.Positions(), Is.EqualTo(new[] { ErrorAt(RuleErrors.SharedIssuerWithoutOwnerPin, 5, 7) }), result.Diagnostics.Describe);
                Assert.That(result.Diagnostics.Single().Message, Does.Contain($"'{provider}'").And.Contain("owner_id"));
                Assert.That(result.RuleSet, Is.Null);
            }
        }
    }

    private static IEnumerable<TestCaseData> PullRequestEvents()
    {
        static TestCaseData Events(string name, string provider, string condition, string stage, bool? allow, bool refused) =>
            new TestCaseData(provider, condition, stage, allow, refused).SetArgDisplayNames(name);

        // Refused: an explicit pull-request event, exact or in a list, for a non-read stage, without the opt-in.
        yield return Events("github pull_request exact for deploy", "github", "event: pull_request", "deploy", null, true);
        yield return Events("github pull_request_target in a list for deploy", "github", "event: { in: [push, pull_request_target] }", "deploy", null, true);
        yield return Events("github raw event_name pull_request for publish", "github", "event_name: pull_request", "publish", null, true);
        yield return Events("github pull_request_review for deploy", "github", "event: pull_request_review", "deploy", null, true);
        yield return Events("github pull_request with allow_pull_requests false", "github", "event: pull_request", "deploy", false, true);
        yield return Events("gitlab merge_request_event exact for deploy", "gitlab", "event: merge_request_event", "deploy", null, true);
        yield return Events("gitlab merge_request_event in a list for deploy", "gitlab", "event: { in: [push, merge_request_event] }", "deploy", null, true);
        yield return Events("gitlab raw pipeline_source external_pull_request_event", "gitlab", "pipeline_source: external_pull_request_event", "deploy", null, true);

        // Accepted: the opt-in, the read stage, or no pull-request event named.
        yield return Events("github pull_request with allow_pull_requests", "github", "event: pull_request", "deploy", true, false);
        yield return Events("github pull_request_target in a list with allow_pull_requests", "github", "event: { in: [push, pull_request_target] }", "deploy", true, false);
        yield return Events("github pull_request for stage read", "github", "event: pull_request", "read", null, false);
        yield return Events("github push for deploy", "github", "event: { in: [push, workflow_dispatch] }", "deploy", null, false);
        yield return Events("github not pull_request for deploy", "github", "event: { not: pull_request }", "deploy", null, false);
        yield return Events("gitlab merge_request_event with allow_pull_requests", "gitlab", "event: merge_request_event", "deploy", true, false);
        yield return Events("gitlab merge_request_event for stage read", "gitlab", "event: merge_request_event", "read", null, false);
        yield return Events("gitlab push for deploy", "gitlab", "event: push", "deploy", null, false);
    }

    [TestCaseSource(nameof(PullRequestEvents))]
    public void Compile_RuleNamingPullRequestEvents_NeedsReadStageOrOptIn(string provider, string condition, string stage, bool? allow, bool refused)
    {
        var pin = provider == "gitlab" ? "owner_id: \"72\"" : "owner_id: \"5001\"";

        var result = RuleFiles.Compile(Rule(provider, [pin, condition], stage, allow));

        using (Assert.EnterMultipleScope())
        {
            if (refused)
            {
                Assert.That(result.Diagnostics.Positions(), Is.EqualTo(new[] { ErrorAt(RuleErrors.PullRequestToPrivilegedStage, 5, 7) }), result.Diagnostics.Describe);
                Assert.That(result.Diagnostics.Single().Message, Does.Contain($"'{stage}'").And.Contain("allow_pull_requests"));
                Assert.That(result.RuleSet, Is.Null);
            }
            else
            {
                Assert.That(result.Diagnostics, Is.Empty, result.Diagnostics.Describe);
                Assert.That(result.RuleSet!.Rules.Single().AllowPullRequests, Is.EqualTo(allow ?? false));
            }
        }
    }

    [Test]
    public void Compile_SharedIssuerRuleWithoutPinAndWithPullRequestEvent_ReportsBoth()
    {
        var result = RuleFiles.Compile(Rule("github", ["repository_id: \"900101\"", "event: pull_request"]));

        Assert.That(
            result.Diagnostics.Positions(),
            Is.EqualTo(new[] { ErrorAt(RuleErrors.SharedIssuerWithoutOwnerPin, 5, 7), ErrorAt(RuleErrors.PullRequestToPrivilegedStage, 5, 7) }),
            result.Diagnostics.Describe);
    }

    [Test]
    public void Compile_SharedIssuerRuleWithoutPinAndWithAnInvalidGrant_ReportsBoth()
    {
        // The owner pin depends only on 'when'; a mistake in 'grant' must not hide it until the next load.
        var result = RuleFiles.Compile(Rule("github", ["repository_id: \"900101\""], stage: "Deploy"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(
                result.Diagnostics.Positions(),
                Is.EquivalentTo(new[] { ErrorAt(RuleErrors.InvalidStage, 8, 14), ErrorAt(RuleErrors.SharedIssuerWithoutOwnerPin, 5, 7) }),
                result.Diagnostics.Describe);
            Assert.That(result.RuleSet, Is.Null);
        }
    }
}
