using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Model;
using TokenBroker.Rules.Tests.Support;
using static TokenBroker.Rules.Tests.Support.DiagnosticFormatting;

namespace TokenBroker.Rules.Tests.Loading;

[TestFixture]
public sealed class RuleCompilerTests
{
    private const string ValidRule = """
        rules:
          - id: r1
            provider: ghes
            when:
              ref: refs/heads/main
            grant:
              audiences: [a]
              stage: deploy
              subject: s
        """;

    [Test]
    public void Compile_WithThreeIndependentMistakes_ReportsAllThreeAtOnce()
    {
        var result = RuleFiles.Compile("""
            rules:
              - id: Bad_Id
                provider: github
                when:
                  owner_id: "5001"
                  namespace_id: "72"
                grant:
                  audiences: [a]
                  stage: deploy
                  ttl: 2h
                  subject: s
            """);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(
                result.Diagnostics.Positions(),
                Is.EqualTo(new[]
                {
                    ErrorAt(RuleErrors.InvalidRuleId, 2, 9),
                    ErrorAt(RuleErrors.UnknownClaim, 6, 7),
                    ErrorAt(RuleErrors.TtlAboveMaximum, 10, 12),
                }),
                result.Diagnostics.Describe);
            Assert.That(result.RuleSet, Is.Null);
        }
    }

    [Test]
    public void Compile_WithMistakesInSeveralRules_ReportsEveryRule()
    {
        var result = RuleFiles.Compile("""
            rules:
              - id: r1
                provider: ghes
                colour: blue
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
              - id: r2
                provider: bitbucket
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
              - id: r3
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: Deploy
                  subject: s
            """);

        Assert.That(
            result.Diagnostics.Positions(),
            Is.EqualTo(new[]
            {
                ErrorAt(RuleErrors.UnknownKey, 4, 5),
                ErrorAt(RuleErrors.UnknownProvider, 12, 15),
                ErrorAt(RuleErrors.InvalidStage, 25, 14),
            }),
            result.Diagnostics.Describe);
    }

    [Test]
    public void Compile_WithErrorsInTwoFiles_ReportsBothFilesAndYieldsNoRuleSet()
    {
        var result = RuleFiles.Compile(
            null,
            new RuleSource("a.yaml", "rules: ]\n"),
            new RuleSource("b.yaml", ValidRule.Replace("stage: deploy", "stage: Deploy", StringComparison.Ordinal)),
            new RuleSource("c.yaml", ValidRule.Replace("id: r1", "id: r3", StringComparison.Ordinal)));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(
                result.Diagnostics.Positions(),
                Is.EqualTo(new[]
                {
                    ErrorAt(RuleErrors.YamlSyntax, 1, 8, "a.yaml"),
                    ErrorAt(RuleErrors.InvalidStage, 8, 14, "b.yaml"),
                }),
                result.Diagnostics.Describe);
            Assert.That(result.RuleSet, Is.Null, "one bad file must stop the whole load, even though c.yaml is fine");
        }
    }

    [Test]
    public void Compile_WithRuleIdUsedInTwoFiles_ReportsTB2005InTheSecondFileNamingTheFirstLocation()
    {
        var result = RuleFiles.Compile(
            null,
            new RuleSource("10-payments.yaml", ValidRule),
            new RuleSource("20-infra.yaml", "# infra\n" + ValidRule));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Diagnostics.Positions(), Is.EqualTo(new[] { ErrorAt(RuleErrors.DuplicateRuleId, 3, 9, "20-infra.yaml") }), result.Diagnostics.Describe);
            Assert.That(result.Diagnostics.Single().Message, Does.Contain("'r1'").And.Contain("10-payments.yaml:2:9"));
            Assert.That(result.RuleSet, Is.Null);
        }
    }

    [Test]
    public void Compile_WithAliasToAnAnchoredMapping_ReportsTB2020AtTheAnchorAndYieldsNoRuleSet()
    {
        var result = RuleFiles.Compile("""
            rules:
              - id: r1
                provider: ghes
                when: &main
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
              - id: r2
                provider: ghes
                when: *main
                grant:
                  audiences: [b]
                  stage: deploy
                  subject: s
            """);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Diagnostics.Select(d => d.Id), Is.Not.Empty.And.All.EqualTo(RuleErrors.AliasNotAllowed), result.Diagnostics.Describe);
            Assert.That(result.Diagnostics.Positions(), Does.Contain(ErrorAt(RuleErrors.AliasNotAllowed, 4, 11)));
            Assert.That(result.RuleSet, Is.Null);
        }
    }

    [Test]
    public void Compile_WithMessageOfUnknownKey_ListsTheAllowedKeys()
    {
        var result = RuleFiles.Compile(ValidRule.Replace("stage: deploy", "stage: deploy\n      lifetime: 10m", StringComparison.Ordinal));

        Assert.That(result.Diagnostics.Single().Message, Does.Contain("'lifetime'").And.Contain("ttl"));
    }

    [Test]
    public void Compile_WithNoSource_ReportsTB2023()
    {
        var result = RuleFiles.Compile(new RuleLoadOptions(), []);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Diagnostics.Positions(), Is.EqualTo(new[] { ErrorAt(RuleErrors.NoRules, 0, 0, "(rules)") }));
            Assert.That(result.RuleSet, Is.Null);
        }
    }

    [Test]
    public void Compile_WithFileAboveMaxLength_ReportsTB2025WithoutParsing()
    {
        var huge = ValidRule + "\n#" + new string('x', RuleSource.MaxLength);

        var result = RuleFiles.Compile(huge);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Diagnostics.Positions(), Is.EqualTo(new[] { ErrorAt(RuleErrors.TooLarge, 0, 0) }));
            Assert.That(result.RuleSet, Is.Null);
        }
    }

    [Test]
    public void Compile_WithMoreRulesThanMaxRules_ReportsTB2025()
    {
        var two = ValidRule + "\n" + ValidRule["rules:\n".Length..].Replace("id: r1", "id: r2", StringComparison.Ordinal);

        var result = RuleFiles.Compile(two, new RuleLoadOptions { MaxRules = 1 });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Diagnostics.Positions(), Is.EqualTo(new[] { ErrorAt(RuleErrors.TooLarge, 0, 0, "(rules)") }), result.Diagnostics.Describe);
            Assert.That(result.RuleSet, Is.Null);
            Assert.That(RuleFiles.Compile(two, new RuleLoadOptions { MaxRules = 2 }).Diagnostics, Is.Empty);
        }
    }

    [Test]
    public void Compile_WithTtlAboveConfiguredMaxTtl_ReportsTB2013NamingTheMaximum()
    {
        var result = RuleFiles.Compile(
            ValidRule + "\n      ttl: 10m",
            new RuleLoadOptions { MaxTtl = TimeSpan.FromMinutes(5) });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Diagnostics.Positions(), Is.EqualTo(new[] { ErrorAt(RuleErrors.TtlAboveMaximum, 10, 12) }), result.Diagnostics.Describe);
            Assert.That(result.Diagnostics.Single().Message, Does.Contain("5m"));
        }
    }

    [Test]
    public void Compile_WithTtlEqualToMaxTtl_IsAccepted()
    {
        var result = RuleFiles.Compile(ValidRule + "\n      ttl: 1h");

        Assert.That(result.RuleSet!.Rules.Single().Grant.Ttl, Is.EqualTo(TimeSpan.FromHours(1)), result.Diagnostics.Describe);
    }

    [Test]
    public void Compile_WithoutTtl_GrantsTheConfiguredDefaultTtl()
    {
        var result = RuleFiles.Compile(ValidRule, new RuleLoadOptions { DefaultTtl = TimeSpan.FromMinutes(7) });

        Assert.That(result.RuleSet!.Rules.Single().Grant.Ttl, Is.EqualTo(TimeSpan.FromMinutes(7)), result.Diagnostics.Describe);
    }

    [Test]
    public void Compile_ValidRule_KeepsEveryFieldWithPositions()
    {
        var rules = RuleFiles.CompileValid("""
            version: 1
            rules:
              - id: payments.deploy-1
                description: deploys
                provider: ghes
                allow_pull_requests: false
                when:
                  owner_id: "5001"
                  branch: { in: [main, release] }
                  job_workflow_ref: { glob: "octo-org/*" }
                grant:
                  audiences: [sts.amazonaws.com, https://deploy.internal/payments]
                  scopes: [deploy:payments, deploy:payments, "x!#$%&'()*+,-./:;<=>?@[]^_`{|}~"]
                  stage: deploy
                  ttl: 1h
                  subject: "github:{repository}"
                  claims:
                    team: payments
                    tags: ["{owner}", "{branch}"]
            """);

        var rule = rules.Rules.Single();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(rule.Id, Is.EqualTo("payments.deploy-1"));
            Assert.That(rule.Description, Is.EqualTo("deploys"));
            Assert.That(rule.Provider, Is.EqualTo("ghes"));
            Assert.That(rule.AllowPullRequests, Is.False);
            Assert.That(rule.Location, Is.EqualTo(new SourceLocation(RuleFiles.FileName, 3, 5)));
            Assert.That(
                rule.Conditions.Select(c => (c.Claim, c.Accessor.Source, c.Condition.Describe(), c.Location.Line, c.Location.Column)),
                Is.EqualTo(new[]
                {
                    ("owner_id", "repository_owner_id", "== \"5001\"", 8, 7),
                    ("branch", "ref", "in [main, release]", 9, 7),
                    ("job_workflow_ref", "job_workflow_ref", "glob \"octo-org/*\"", 10, 7),
                }));
            Assert.That(rule.Grant.Audiences, Is.EqualTo(new[] { "sts.amazonaws.com", "https://deploy.internal/payments" }));
            Assert.That(rule.Grant.Scopes, Is.EqualTo(new[] { "deploy:payments", "x!#$%&'()*+,-./:;<=>?@[]^_`{|}~" }), "duplicates are dropped, every RFC 6749 scope character is allowed");
            Assert.That(rule.Grant.Stage, Is.EqualTo("deploy"));
            Assert.That(rule.Grant.Ttl, Is.EqualTo(TimeSpan.FromHours(1)));
            Assert.That(rule.Grant.Subject.Source, Is.EqualTo("github:{repository}"));
            Assert.That(rule.Grant.Claims.Select(c => c.Key), Is.EqualTo(new[] { "team", "tags" }));
            Assert.That(rule.Grant.Claims[1].Value, Is.TypeOf<ClaimValueTemplate.List>());
        }
    }

    [Test]
    public void Compile_SeveralFiles_KeepsRulesInSourceThenDeclaredOrder()
    {
        var result = RuleFiles.Compile(
            null,
            new RuleSource("b.yaml", ValidRule.Replace("id: r1", "id: zeta", StringComparison.Ordinal) + "\n" + ValidRule["rules:\n".Length..].Replace("id: r1", "id: alpha", StringComparison.Ordinal)),
            new RuleSource("a.yaml", ValidRule.Replace("id: r1", "id: middle", StringComparison.Ordinal)));

        Assert.That(result.RuleSet!.Rules.Select(r => r.Id), Is.EqualTo(new[] { "zeta", "alpha", "middle" }), result.Diagnostics.Describe);
    }

    [Test]
    public void Compile_ForProvider_ReturnsOnlyThatProvidersRulesInOrder()
    {
        var rules = RuleFiles.CompileValid("""
            rules:
              - id: one
                provider: ghes
                when: { ref: refs/heads/main }
                grant: { audiences: [a], stage: deploy, subject: s }
              - id: two
                provider: gitlab
                when: { owner_id: "72" }
                grant: { audiences: [a], stage: deploy, subject: s }
              - id: three
                provider: ghes
                when: { ref: refs/heads/dev }
                grant: { audiences: [a], stage: deploy, subject: s }
            """);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rules.ForProvider("ghes").ToArray().Select(r => r.Id), Is.EqualTo(new[] { "one", "three" }));
            Assert.That(rules.ForProvider("gitlab").ToArray().Select(r => r.Id), Is.EqualTo(new[] { "two" }));
            Assert.That(rules.ForProvider("github").Length, Is.Zero);
        }
    }

    [Test]
    public void Compile_WithDeeplyNestedFlowCollections_IsRefusedQuicklyAndWithoutRecursingPerLevel()
    {
        // 100,000 levels of '[' fit in a 200 KB file, well under RuleSource.MaxLength. A loader that recurses per
        // level overflows an ordinary 8 MB stack (and takes the process with it), and one that rescans every open
        // level is quadratic. The compile runs on a background thread with a large stack so that neither failure
        // can take the test host down or hold the suite up: the test only waits a few seconds for the answer.
        const int depth = 100_000;
        var yaml = "rules: " + new string('[', depth) + new string(']', depth) + "\n";
        RuleLoadResult? result = null;
        var thread = new Thread(() => result = RuleFiles.Compile(yaml), maxStackSize: 512 * 1024 * 1024) { IsBackground = true };

        thread.Start();
        var finished = thread.Join(TimeSpan.FromSeconds(3));

        Assert.That(finished, Is.True, "compiling a deeply nested file must be refused quickly (limit the nesting before building the YAML tree)");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(result!.RuleSet, Is.Null);
            Assert.That(result.Diagnostics, Is.Not.Empty);
            Assert.That(result.Diagnostics.Select(d => d.Location.File), Has.All.EqualTo(RuleFiles.FileName));
        }
    }
}
