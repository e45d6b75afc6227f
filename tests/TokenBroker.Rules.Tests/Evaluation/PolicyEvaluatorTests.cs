using TokenBroker.Rules.Evaluation;
using TokenBroker.Rules.Model;
using TokenBroker.Rules.Providers;
using TokenBroker.Rules.Tests.Support;

namespace TokenBroker.Rules.Tests.Evaluation;

/// <summary>Evaluation semantics, each shown with rules written for the purpose and the fixture tokens.</summary>
[TestFixture]
public sealed class PolicyEvaluatorTests
{
    private const string DeployAudience = "https://deploy.internal/payments";

    private static PolicyDecision Evaluate(RuleSet rules, ProviderDescriptor provider, IJobClaims claims, string[] audiences, string[]? scopes = null, bool trace = false) =>
        PolicyEvaluator.Evaluate(rules, provider, claims, new PolicyRequest(provider.Name, audiences, scopes), trace);

    /// <summary>
    /// A deploy rule that the pull_request_target_on_main token satisfies condition by condition: right owner,
    /// right repository, branch main. Only the pull-request guard stands between it and a deploy token.
    /// </summary>
    private static string MainBranchDeployRule(string stage = "deploy", string extra = "") => $$"""
        rules:
          - id: main-deploy
            provider: github
            {{extra}}
            when:
              owner_id: "5001"
              repository_id: "900101"
              branch: main
            grant:
              audiences: [{{DeployAudience}}]
              stage: {{stage}}
              subject: "github:{repository}:{branch}"
        """;

    [Test]
    public void Evaluate_MainBranchDeployRuleOnPushToMain_IsGranted()
    {
        var rules = RuleFiles.CompileValid(MainBranchDeployRule());

        var decision = Evaluate(rules, TestProviders.GitHub, Fixtures.GitHub("push_main_production"), [DeployAudience]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Subject, Is.EqualTo("github:octo-org/payments:main"));
        }
    }

    [Test]
    public void Evaluate_PullRequestTargetOnMain_IsRefusedByThePullRequestGuardAlone()
    {
        var rules = RuleFiles.CompileValid(MainBranchDeployRule());

        var decision = Evaluate(rules, TestProviders.GitHub, Fixtures.GitHub("pull_request_target_on_main"), [DeployAudience], trace: true);

        var trace = decision.Trace!.Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
            Assert.That(decision.Subject, Is.Null);
            Assert.That(trace.Conditions.Select(c => c.Held), Has.All.True, "every condition holds: the guard is what refuses");
            Assert.That(trace.ConditionsHeld, Is.False);
            Assert.That(trace.AudiencesGranted, Is.Null);
            Assert.That(trace.PullRequestGuard, Does.Contain("pull_request_target").And.Contain("'deploy'").And.Contain("allow_pull_requests"));
        }
    }

    [Test]
    public void Evaluate_PullRequestTargetOnMain_IsGrantedWhenTheRuleAllowsPullRequests()
    {
        var rules = RuleFiles.CompileValid(MainBranchDeployRule(extra: "allow_pull_requests: true"));

        var decision = Evaluate(rules, TestProviders.GitHub, Fixtures.GitHub("pull_request_target_on_main"), [DeployAudience], trace: true);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Rule?.Id, Is.EqualTo("main-deploy"));
            Assert.That(decision.Trace!.Single().PullRequestGuard, Is.Null);
        }
    }

    [Test]
    public void Evaluate_PullRequestTargetOnMain_IsGrantedForTheReadStage()
    {
        var rules = RuleFiles.CompileValid(MainBranchDeployRule(stage: "read"));

        var decision = Evaluate(rules, TestProviders.GitHub, Fixtures.GitHub("pull_request_target_on_main"), [DeployAudience]);

        Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
    }

    [Test]
    public void Evaluate_RuleAdmittingPullRequestsByGlob_StillHitsTheRuntimeGuard()
    {
        // A glob is not a finite set, so the load check cannot see it; the evaluator must.
        var rules = RuleFiles.CompileValid("""
            rules:
              - id: any-pr-event
                provider: github
                when:
                  owner_id: "5001"
                  event: { glob: "pull_request*" }
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(Evaluate(rules, TestProviders.GitHub, Fixtures.GitHub("pull_request_from_fork"), ["a"]).Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
            Assert.That(Evaluate(rules, TestProviders.GitHub, Fixtures.GitHub("pull_request_target_on_main"), ["a"]).Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
        }
    }

    [Test]
    public void Evaluate_GitLabMergeRequestPipeline_IsRefusedANonReadStageWithoutOptIn()
    {
        var rules = RuleFiles.CompileValid("""
            rules:
              - id: infra-any
                provider: gitlab
                when:
                  owner_id: "72"
                  repository_id: "4242"
                grant:
                  audiences: [https://iac.internal/state]
                  stage: deploy
                  subject: "gitlab:{repository}"
            """);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(Evaluate(rules, TestProviders.GitLab, Fixtures.GitLab("merge_request_pipeline"), []).Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
            Assert.That(Evaluate(rules, TestProviders.GitLab, Fixtures.GitLab("protected_main_staging"), []).Outcome, Is.EqualTo(PolicyOutcome.Granted));
        }
    }

    private const string TwoMatchingRules = """
        rules:
          - id: first
            provider: ghes
            when:
              repository_id: "900101"
            grant:
              audiences: [a]
              scopes: [one]
              stage: deploy
              subject: first
          - id: second
            provider: ghes
            when:
              repository_id: "900101"
            grant:
              audiences: [a, b]
              scopes: [one, two]
              stage: deploy
              subject: second
        """;

    [Test]
    public void Evaluate_TwoRulesThatBothMatch_TheFirstInDeclaredOrderDecides()
    {
        var rules = RuleFiles.CompileValid(TwoMatchingRules);

        var decision = Evaluate(rules, TestProviders.Ghes, Fixtures.GitHub("push_main_production"), ["a"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Rule?.Id, Is.EqualTo("first"));
            Assert.That(decision.Subject, Is.EqualTo("first"));
        }
    }

    [Test]
    public void Evaluate_TwoRulesInTheOtherOrder_TheOtherDecides()
    {
        var split = TwoMatchingRules.IndexOf("  - id: second", StringComparison.Ordinal);
        var first = TwoMatchingRules["rules:\n".Length..split];
        var second = TwoMatchingRules[split..];
        var rules = RuleFiles.CompileValid("rules:\n" + second + "\n" + first);

        var decision = Evaluate(rules, TestProviders.Ghes, Fixtures.GitHub("push_main_production"), ["a"]);

        Assert.That(decision.Rule?.Id, Is.EqualTo("second"));
    }

    [Test]
    public void Evaluate_FirstMatchingRuleLacksTheAudience_TheNextRuleThatGrantsItDecides()
    {
        var rules = RuleFiles.CompileValid(TwoMatchingRules);

        var decision = Evaluate(rules, TestProviders.Ghes, Fixtures.GitHub("push_main_production"), ["b"], ["two"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Rule?.Id, Is.EqualTo("second"));
            Assert.That(decision.Scopes, Is.EqualTo(new[] { "two" }));
        }
    }

    [Test]
    public void Evaluate_DecidingRuleLacksTheScope_IsRefusedWithoutFallingThrough()
    {
        // The rule that matches and grants the audience decides; a later rule with more scopes is not consulted.
        var rules = RuleFiles.CompileValid(TwoMatchingRules);

        var decision = Evaluate(rules, TestProviders.Ghes, Fixtures.GitHub("push_main_production"), ["a"], ["two"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.ScopeNotGranted));
            Assert.That(decision.Rule?.Id, Is.EqualTo("first"));
        }
    }

    [Test]
    public void Evaluate_WithoutAudience_SingleAudienceRuleGrantsItsAudience()
    {
        var rules = RuleFiles.CompileValid(TwoMatchingRules);

        var decision = Evaluate(rules, TestProviders.Ghes, Fixtures.GitHub("push_main_production"), []);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Audiences, Is.EqualTo(new[] { "a" }));
        }
    }

    [Test]
    public void Evaluate_WithoutAudience_MultiAudienceRuleRequiresOne()
    {
        var rules = RuleFiles.CompileValid(TwoMatchingRules.Replace("audiences: [a]", "audiences: [a, c]", StringComparison.Ordinal));

        var decision = Evaluate(rules, TestProviders.Ghes, Fixtures.GitHub("push_main_production"), []);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.AudienceRequired));
            Assert.That(decision.Rule?.Id, Is.EqualTo("first"));
            Assert.That(decision.Audiences, Is.Empty);
        }
    }

    [Test]
    public void Evaluate_WithoutScopeParameter_GrantsAllRuleScopes_WithEmptyScopeList_GrantsNone()
    {
        var rules = RuleFiles.CompileValid(TwoMatchingRules);
        var claims = Fixtures.GitHub("push_main_production");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(Evaluate(rules, TestProviders.Ghes, claims, ["b"], null).Scopes, Is.EqualTo(new[] { "one", "two" }));
            Assert.That(Evaluate(rules, TestProviders.Ghes, claims, ["b"], []).Scopes, Is.Empty);
        }
    }

    [Test]
    public void Evaluate_AudienceComparison_IsOrdinal()
    {
        var rules = RuleFiles.CompileValid(TwoMatchingRules);

        var decision = Evaluate(rules, TestProviders.Ghes, Fixtures.GitHub("push_main_production"), ["A"]);

        Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.AudienceNotGranted));
    }

    [Test]
    public void Evaluate_SubjectReadingAClaimTheTokenLacks_IsTemplateClaimMissing()
    {
        var rules = RuleFiles.CompileValid("""
            rules:
              - id: needs-environment
                provider: github
                when:
                  owner_id: "5001"
                grant:
                  audiences: [a]
                  stage: read
                  subject: "github:{repository}:{environment}"
            """);

        var decision = Evaluate(rules, TestProviders.GitHub, Fixtures.GitHub("tag_release_immutable_sub"), ["a"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.TemplateClaimMissing));
            Assert.That(decision.Rule?.Id, Is.EqualTo("needs-environment"));
            Assert.That(decision.Detail, Does.Contain("subject").And.Contain("{environment}"));
            Assert.That(decision.Subject, Is.Null);
        }
    }

    [Test]
    public void Evaluate_NestedClaimReadingADerivedClaimThatDoesNotApply_IsTemplateClaimMissing()
    {
        var rules = RuleFiles.CompileValid("""
            rules:
              - id: needs-branch
                provider: github
                when:
                  owner_id: "5001"
                grant:
                  audiences: [a]
                  stage: read
                  subject: "github:{repository}"
                  claims:
                    tags:
                      principal_tags:
                        branch: ["{branch}"]
            """);

        var decision = Evaluate(rules, TestProviders.GitHub, Fixtures.GitHub("tag_release_immutable_sub"), ["a"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.TemplateClaimMissing));
            Assert.That(decision.Detail, Does.Contain("'tags'").And.Contain("{branch}"));
            Assert.That(decision.Claims, Is.Empty);
        }
    }

    [Test]
    public void Evaluate_ClaimsWithBrokerPlaceholdersAndEscapes_RenderInOrder()
    {
        var rules = RuleFiles.CompileValid("""
            rules:
              - id: rendered
                provider: github
                when:
                  owner_id: "5001"
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: "{provider}:{rule}:{stage}"
                  claims:
                    z_first: "{{literal}}"
                    a_second: ["{owner}", "{repository_id}"]
                    m_third: { by: "{actor}", run: "{run_id}" }
            """);

        var decision = Evaluate(rules, TestProviders.GitHub, Fixtures.GitHub("push_main_production"), ["a"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.Granted), decision.Detail);
            Assert.That(decision.Subject, Is.EqualTo("github:rendered:deploy"));
            Assert.That(
                ClaimJson.Serialize(decision.Claims),
                Is.EqualTo("""{"z_first":"{literal}","a_second":["octo-org","900101"],"m_third":{"by":"octocat","run":"7000123456"}}"""));
        }
    }

    private static IEnumerable<TestCaseData> ConditionsOnEnvironment()
    {
        yield return new TestCaseData("staging").SetArgDisplayNames("exact");
        yield return new TestCaseData("{ in: [staging, qa] }").SetArgDisplayNames("in");
        yield return new TestCaseData("{ glob: '*' }").SetArgDisplayNames("glob star");
        yield return new TestCaseData("{ regex: '.*' }").SetArgDisplayNames("regex anything");
        yield return new TestCaseData("{ not: production }").SetArgDisplayNames("not exact");
        yield return new TestCaseData("{ not: { in: [production] } }").SetArgDisplayNames("not in");
        yield return new TestCaseData("{ not: { glob: 'prod*' } }").SetArgDisplayNames("not glob");
        yield return new TestCaseData("{ not: { regex: 'prod.*' } }").SetArgDisplayNames("not regex");
        yield return new TestCaseData("{ not: { not: staging } }").SetArgDisplayNames("double not");
    }

    [TestCaseSource(nameof(ConditionsOnEnvironment))]
    public void Evaluate_ConditionOnAbsentClaim_FailsForEveryOperatorIncludingNot(string condition)
    {
        var rules = RuleFiles.CompileValid($"""
            rules:
              - id: on-environment
                provider: ghes
                when:
                  repository_id: "900101"
                  environment: {condition}
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """);
        var without = Fixtures.GitHubValues("tag_release_immutable_sub");
        var with = new Dictionary<string, string>(without, StringComparer.Ordinal) { ["environment"] = "staging" };

        var absent = Evaluate(rules, TestProviders.Ghes, new DictionaryJobClaims(without), ["a"], trace: true);
        var present = Evaluate(rules, TestProviders.Ghes, new DictionaryJobClaims(with), ["a"]);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(absent.Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
            Assert.That(absent.Trace!.Single().Conditions[1].Actual, Is.Null);
            Assert.That(absent.Trace!.Single().Conditions[1].Held, Is.False);
            Assert.That(present.Outcome, Is.EqualTo(PolicyOutcome.Granted), "with the claim present the condition holds");
        }
    }

    [Test]
    public void Evaluate_NotMainOnATagToken_DoesNotMatchBecauseBranchIsAbsent()
    {
        var rules = RuleFiles.CompileValid("""
            rules:
              - id: feature-branches
                provider: ghes
                when:
                  repository_id: "900101"
                  branch: { not: main }
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """);
        var feature = Fixtures.GitHubValues("push_main_production");
        feature["ref"] = "refs/heads/feature";

        using (Assert.EnterMultipleScope())
        {
            Assert.That(Evaluate(rules, TestProviders.Ghes, Fixtures.GitHub("tag_release_immutable_sub"), ["a"]).Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
            Assert.That(Evaluate(rules, TestProviders.Ghes, Fixtures.GitHub("push_main_production"), ["a"]).Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
            Assert.That(Evaluate(rules, TestProviders.Ghes, new DictionaryJobClaims(feature), ["a"]).Outcome, Is.EqualTo(PolicyOutcome.Granted));
        }
    }

    [Test]
    public void Evaluate_OnlyRulesOfTheRequestedProviderAreConsidered()
    {
        var rules = RuleFiles.CompileValid(TwoMatchingRules);

        var decision = PolicyEvaluator.Evaluate(rules, TestProviders.GitHub, Fixtures.GitHub("push_main_production"), new PolicyRequest("github", ["a"], null), trace: true);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(decision.Outcome, Is.EqualTo(PolicyOutcome.NoRuleMatched));
            Assert.That(decision.Trace, Is.Empty);
            Assert.That(decision.Detail, Does.Contain("0 rules"));
        }
    }
}
