using TokenBroker.Rules.Evaluation;
using TokenBroker.Rules.Providers;
using TokenBroker.Rules.Tests.Support;

namespace TokenBroker.Rules.Tests.Evaluation;

/// <summary>The shipped rules (config/rules) against the job-token fixtures (samples/fixtures).</summary>
[TestFixture]
public sealed class PolicyEvaluatorSampleRulesTests
{
    private const string DeployAudience = "https://deploy.internal/payments";
    private const string ArtifactsAudience = "https://artifacts.internal";
    private const string StateAudience = "https://iac.internal/state";

    private static PolicyDecision GitHub(IJobClaims claims, string[] audiences, string[]? scopes = null, bool trace = false) =>
        PolicyEvaluator.Evaluate(RuleFiles.SampleRules, TestProviders.GitHub, claims, new PolicyRequest("github", audiences, scopes), trace);

    private static PolicyDecision GitHub(string fixture, string[] audiences, string[]? scopes = null, bool trace = false) =>
        GitHub(Fixtures.GitHub(fixture), audiences, scopes, trace);

    private static PolicyDecision GitLab(string fixture, string[] audiences, string[]? scopes = null) =>
        PolicyEvaluator.Evaluate(RuleFiles.SampleRules, TestProviders.GitLab, Fixtures.GitLab(fixture), new PolicyRequest("gitlab", audiences, scopes));

    [Test]
    public void Evaluate_PushToMainInProductionForDeployAudience_IsGrantedByPaymentsDeployProd()
    {
        var decision = GitHub("push_main_production", [DeployAudience]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.IsGranted, Is.True);
            Assert.That(decision.Rule?.Id, Is.EqualTo("payments-deploy-prod"));
            Assert.That(decision.Subject, Is.EqualTo("github:octo-org/payments:production"));
            Assert.That(decision.Audiences, Is.EqualTo(new[] { DeployAudience }));
            Assert.That(decision.Scopes, Is.EqualTo(new[] { "deploy:payments" }));
            Assert.That(decision.Rule!.Grant.Stage, Is.EqualTo("deploy"));
            Assert.That(decision.Rule.Grant.Ttl, Is.EqualTo(TimeSpan.FromMinutes(10)));
            Assert.That(
                ClaimJson.Serialize(decision.Claims),
                Is.EqualTo("""{"https://aws.amazon.com/tags":{"principal_tags":{"repo":["octo-org/payments"],"environment":["production"]},"transitive_tag_keys":["repo","environment"]}}"""));
            Assert.That(decision.Trace, Is.Null, "no trace unless asked for");
        }
    }

    [Test]
    public void Evaluate_PushToMainInProductionForBothAudiences_GrantsBothInRequestOrder()
    {
        var decision = GitHub("push_main_production", [DeployAudience, "sts.amazonaws.com", DeployAudience]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Audiences, Is.EqualTo(new[] { DeployAudience, "sts.amazonaws.com" }));
        }
    }

    [Test]
    public void Evaluate_PushToMainInProductionWithoutAudience_RequiresOneBecauseTheRuleGrantsTwo()
    {
        var decision = GitHub("push_main_production", []);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.AudienceRequired));
            Assert.That(decision.Rule?.Id, Is.EqualTo("payments-deploy-prod"));
            Assert.That(decision.Subject, Is.Null);
        }
    }

    [Test]
    public void Evaluate_PushToMainInProductionWithScopeTheRuleDoesNotGrant_IsScopeNotGranted()
    {
        var decision = GitHub("push_main_production", [DeployAudience], ["deploy:payments", "artifacts:publish"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.ScopeNotGranted));
            Assert.That(decision.Rule?.Id, Is.EqualTo("payments-deploy-prod"));
            Assert.That(decision.Detail, Does.Contain("artifacts:publish"));
            Assert.That(decision.Subject, Is.Null);
        }
    }

    [Test]
    public void Evaluate_PushToMainInProductionWithGrantedScope_GrantsExactlyTheRequestedScopes()
    {
        var decision = GitHub("push_main_production", [DeployAudience], ["deploy:payments", "deploy:payments"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Scopes, Is.EqualTo(new[] { "deploy:payments" }));
        }
    }

    private static IEnumerable<TestCaseData> UntrustedDeployWorkflows()
    {
        yield return new TestCaseData("octo-org/workflows/.github/workflows/deploy.yml@refs/heads/main").SetArgDisplayNames("deploy workflow from a branch");
        yield return new TestCaseData("octo-org/workflows/.github/workflows/deploy.yml@refs/tags/v3/evil").SetArgDisplayNames("tag with a slash");
        yield return new TestCaseData("octo-org/payments/.github/workflows/deploy.yml@refs/tags/v3.1.0").SetArgDisplayNames("workflow of the repository itself");
    }

    [TestCaseSource(nameof(UntrustedDeployWorkflows))]
    public void Evaluate_PushToMainFromUntrustedDeployWorkflow_IsNotGrantedDeploy(string jobWorkflowRef)
    {
        var claims = Fixtures.GitHubValues("push_main_production");
        claims["job_workflow_ref"] = jobWorkflowRef;

        var decision = GitHub(new DictionaryJobClaims(claims), [DeployAudience]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.AudienceNotGranted));
            Assert.That(decision.Rule?.Id, Is.EqualTo("payments-ci-read"), "only the read rule still matches");
        }
    }

    [TestCase(DeployAudience)]
    [TestCase(ArtifactsAudience)]
    public void Evaluate_LookalikeRepository_MatchesNoRule(string audience)
    {
        var decision = GitHub("lookalike_repository", [audience]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
            Assert.That(decision.Rule, Is.Null);
            Assert.That(decision.Subject, Is.Null);
            Assert.That(decision.Detail, Does.Contain("3 rules"));
        }
    }

    [Test]
    public void Evaluate_PullRequestFromForkForDeployAudience_IsAudienceNotGranted()
    {
        var decision = GitHub("pull_request_from_fork", [DeployAudience]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.AudienceNotGranted));
            Assert.That(decision.Rule?.Id, Is.EqualTo("payments-ci-read"));
            Assert.That(decision.Detail, Does.Contain(DeployAudience));
            Assert.That(decision.Subject, Is.Null);
        }
    }

    [Test]
    public void Evaluate_PullRequestFromForkForArtifacts_IsGrantedReadByPaymentsCiRead()
    {
        var decision = GitHub("pull_request_from_fork", [ArtifactsAudience]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Rule?.Id, Is.EqualTo("payments-ci-read"));
            Assert.That(decision.Rule!.Grant.Stage, Is.EqualTo("read"));
            Assert.That(decision.Subject, Is.EqualTo("github:octo-org/payments:ci"));
            Assert.That(decision.Scopes, Is.EqualTo(new[] { "artifacts:read" }));
            Assert.That(decision.Audiences, Is.EqualTo(new[] { ArtifactsAudience }));
        }
    }

    [Test]
    public void Evaluate_PullRequestFromForkWithoutAudience_GetsTheReadRulesOnlyAudience()
    {
        var decision = GitHub("pull_request_from_fork", []);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Audiences, Is.EqualTo(new[] { ArtifactsAudience }));
        }
    }

    [Test]
    public void Evaluate_PullRequestTargetOnMainForDeployAudience_DoesNotGetTheDeployRule()
    {
        var decision = GitHub("pull_request_target_on_main", [DeployAudience]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.IsGranted, Is.False);
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.AudienceNotGranted));
            Assert.That(decision.Rule?.Id, Is.EqualTo("payments-ci-read"));
        }
    }

    [Test]
    public void Evaluate_VersionTagForArtifacts_IsGrantedByPaymentsReleaseTags()
    {
        var decision = GitHub("tag_release_immutable_sub", [ArtifactsAudience]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Rule?.Id, Is.EqualTo("payments-release-tags"));
            Assert.That(decision.Subject, Is.EqualTo("github:octo-org/payments:tag:v2.4.0"));
            Assert.That(decision.Scopes, Is.EqualTo(new[] { "artifacts:publish" }));
            Assert.That(decision.Rule!.Grant.Ttl, Is.EqualTo(TimeSpan.FromMinutes(15)));
        }
    }

    [TestCase("refs/tags/v2.4.0-rc1")]
    [TestCase("refs/tags/v2.4")]
    [TestCase("refs/tags/xv2.4.0")]
    [TestCase("refs/tags/v2.4.0\n")]
    [TestCase("refs/heads/v2.4.0")]
    public void Evaluate_RefThatIsNotAVersionTag_FallsThroughToTheReadRule(string reference)
    {
        var claims = Fixtures.GitHubValues("tag_release_immutable_sub");
        claims["ref"] = reference;

        var decision = GitHub(new DictionaryJobClaims(claims), [ArtifactsAudience]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Rule?.Id, Is.EqualTo("payments-ci-read"));
            Assert.That(decision.Scopes, Is.EqualTo(new[] { "artifacts:read" }));
        }
    }

    [Test]
    public void Evaluate_GitLabProtectedMainInStagingWithoutAudience_IsGrantedByInfraStagingPlan()
    {
        var decision = GitLab("protected_main_staging", []);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Rule?.Id, Is.EqualTo("infra-staging-plan"));
            Assert.That(decision.Audiences, Is.EqualTo(new[] { StateAudience }));
            Assert.That(decision.Scopes, Is.EqualTo(new[] { "state:read", "state:write" }));
            Assert.That(decision.Subject, Is.EqualTo("gitlab:platform/infra:staging"));
        }
    }

    [Test]
    public void Evaluate_GitLabProtectedProductionApplyForSts_IsGrantedByInfraProductionApply()
    {
        var decision = GitLab("protected_production_apply", ["sts.amazonaws.com"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Rule?.Id, Is.EqualTo("infra-production-apply"));
            Assert.That(decision.Audiences, Is.EqualTo(new[] { "sts.amazonaws.com" }));
            Assert.That(decision.Subject, Is.EqualTo("gitlab:platform/infra:production"));
        }
    }

    [TestCase("runner_environment", "gitlab-hosted")]
    [TestCase("environment_protected", "false")]
    [TestCase("ref_type", "tag")]
    public void Evaluate_GitLabProductionApplyMissingOneSafeguard_MatchesNoRule(string claim, string value)
    {
        var claims = Fixtures.GitLabValues("protected_production_apply");
        claims[claim] = value;

        var decision = PolicyEvaluator.Evaluate(RuleFiles.SampleRules, TestProviders.GitLab, new DictionaryJobClaims(claims), new PolicyRequest("gitlab", ["sts.amazonaws.com"], null));

        Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
    }

    [Test]
    public void Evaluate_GitLabMergeRequestAskingToWriteState_IsRefused()
    {
        var decision = GitLab("merge_request_pipeline", [StateAudience], ["state:write"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.IsGranted, Is.False);
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.ScopeNotGranted));
            Assert.That(decision.Rule?.Id, Is.EqualTo("infra-mr-plan"));
        }
    }

    [Test]
    public void Evaluate_GitLabMergeRequestAskingToReadState_IsGrantedByInfraMrPlan()
    {
        var decision = GitLab("merge_request_pipeline", [StateAudience], ["state:read"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Rule?.Id, Is.EqualTo("infra-mr-plan"));
            Assert.That(decision.Rule!.Grant.Stage, Is.EqualTo("read"));
            Assert.That(decision.Scopes, Is.EqualTo(new[] { "state:read" }));
            Assert.That(decision.Subject, Is.EqualTo("gitlab:platform/infra:mr"));
        }
    }

    [Test]
    public void Evaluate_WithTrace_RecordsEveryConditionOfTheDecidingRule()
    {
        var decision = GitHub("push_main_production", [DeployAudience], trace: true);

        var trace = decision.Trace!.Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(trace.RuleId, Is.EqualTo("payments-deploy-prod"));
            Assert.That(trace.ConditionsHeld, Is.True);
            Assert.That(trace.AudiencesGranted, Is.True);
            Assert.That(trace.PullRequestGuard, Is.Null);
            Assert.That(trace.Conditions, Is.EqualTo(new[]
            {
                new ConditionTrace("owner_id", "repository_owner_id", "== \"5001\"", "5001", true),
                new ConditionTrace("repository_id", "repository_id", "== \"900101\"", "900101", true),
                new ConditionTrace("ref", "ref", "== \"refs/heads/main\"", "refs/heads/main", true),
                new ConditionTrace("environment", "environment", "== \"production\"", "production", true),
                new ConditionTrace("event", "event_name", "in [push, workflow_dispatch]", "push", true),
                new ConditionTrace("workflow_ref", "job_workflow_ref", "glob \"octo-org/workflows/.github/workflows/deploy.yml@refs/tags/v*\"", "octo-org/workflows/.github/workflows/deploy.yml@refs/tags/v3.1.0", true),
            }));
        }
    }

    [Test]
    public void Evaluate_WithTraceForPullRequest_ShowsWhyEachRuleFailedOrDidNotGrant()
    {
        var decision = GitHub("pull_request_from_fork", [DeployAudience], trace: true);

        var traces = decision.Trace!;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(traces.Select(t => (t.RuleId, t.ConditionsHeld, t.AudiencesGranted)), Is.EqualTo(new[]
            {
                ("payments-deploy-prod", false, (bool?)null),
                ("payments-release-tags", false, null),
                ("payments-ci-read", true, false),
            }));
            Assert.That(traces[0].Conditions.Where(c => !c.Held), Is.EqualTo(new[]
            {
                new ConditionTrace("ref", "ref", "== \"refs/heads/main\"", "refs/pull/77/merge", false),
                new ConditionTrace("environment", "environment", "== \"production\"", null, false),
                new ConditionTrace("event", "event_name", "in [push, workflow_dispatch]", "pull_request", false),
                new ConditionTrace("workflow_ref", "job_workflow_ref", "glob \"octo-org/workflows/.github/workflows/deploy.yml@refs/tags/v*\"", "octo-org/payments/.github/workflows/ci.yml@refs/pull/77/merge", false),
            }));
            Assert.That(traces[1].Conditions.Single(c => c.Claim == "tag"), Is.EqualTo(new ConditionTrace("tag", "ref", "regex \"v[0-9]+\\.[0-9]+\\.[0-9]+\"", null, false)));
            Assert.That(traces.Select(t => t.PullRequestGuard), Is.All.Null, "only the read rule held, and read is open to pull requests");
        }
    }

    [Test]
    public void Evaluate_WithTraceForLookalike_ShowsTheRepositoryIdMismatchInEveryRule()
    {
        var decision = GitHub("lookalike_repository", [DeployAudience], trace: true);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
            Assert.That(decision.Trace!.Select(t => t.RuleId), Is.EqualTo(new[] { "payments-deploy-prod", "payments-release-tags", "payments-ci-read" }));
            Assert.That(
                decision.Trace!.Select(t => t.Conditions.Single(c => c.Claim == "repository_id")),
                Has.All.EqualTo(new ConditionTrace("repository_id", "repository_id", "== \"900101\"", "900999", false)));
        }
    }
}
