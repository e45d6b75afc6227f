using System.Text.Json;
using TokenBroker.Cli;
using TokenBroker.Tests.Exchange;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Cli;

/// <summary>The <c>tokenbroker rules</c> verbs through the real command line: exit codes 0/1/2 and output shapes.</summary>
[TestFixture]
public sealed class RulesCliTests
{
    private string _temp = null!;

    internal static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "TokenBroker.sln")))
            {
                dir = dir.Parent;
            }

            Assert.That(dir, Is.Not.Null, "repository root not found");
            return dir!.FullName;
        }
    }

    private static string Repo(string relative) => Path.Combine(RepoRoot, relative);

    [SetUp]
    public void CreateTemp()
    {
        _temp = Path.Combine(Path.GetTempPath(), "tb-rules-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_temp);
    }

    [TearDown]
    public void DeleteTemp() => Directory.Delete(_temp, recursive: true);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_temp, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    private sealed record Run(int Code, string Out, string Err);

    private static async Task<Run> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = await BrokerCli.RunAsync(args, output, error, new ManualClock(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)));
        return new Run(code, output.ToString(), error.ToString());
    }

    private const string UnpinnedRule = """
        rules:
          - id: r1
            provider: github
            when:
              repository_id: "1"
              bogus_claim: x
            grant:
              audiences: [a]
              stage: deploy
              subject: s
              colour: red
        """;

    // validate

    [Test]
    public async Task Validate_SampleRules_ExitsZero()
    {
        var run = await RunAsync("rules", "validate", Repo("config/rules"));

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Ok), run.Out + run.Err);
        Assert.That(run.Out, Does.EndWith("2 file(s), 6 rule(s): 0 error(s), 0 warning(s)" + Environment.NewLine));
    }

    [Test]
    public async Task Validate_ReportsEveryErrorAtOnce_WithPositionsAndIds_AndExitsOne()
    {
        var file = Write("bad.yaml", UnpinnedRule);

        var run = await RunAsync("rules", "validate", file);

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Failed));
        Assert.That(run.Out, Does.Contain($"{file}:6:7: error TB2008:"));
        Assert.That(run.Out, Does.Contain($"{file}:11:7: error TB2002:"));
        Assert.That(run.Out, Does.Contain($"{file}:5:7: error TB2016:"));
        Assert.That(run.Out, Does.Contain("fix: add 'owner_id"));
    }

    [Test]
    public async Task Validate_Json_HasAStableShape()
    {
        var file = Write("bad.yaml", UnpinnedRule);

        var run = await RunAsync("rules", "validate", file, "--format", "json");

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Failed));
        using var json = JsonDocument.Parse(run.Out);
        var first = json.RootElement.GetProperty("diagnostics")[0];
        Assert.That(first.EnumerateObject().Select(p => p.Name).Take(6), Is.EqualTo(new[] { "id", "severity", "file", "line", "column", "message" }));
        Assert.That(first.GetProperty("severity").GetString(), Is.EqualTo("error"));
        Assert.That(first.GetProperty("file").GetString(), Is.EqualTo(file));
        var summary = json.RootElement.GetProperty("summary");
        Assert.That(summary.GetProperty("files").GetInt32(), Is.EqualTo(1));
        Assert.That(summary.GetProperty("rules").ValueKind, Is.EqualTo(JsonValueKind.Null), "no rule set when the file has errors");
        Assert.That(summary.GetProperty("errors").GetInt32(), Is.EqualTo(json.RootElement.GetProperty("diagnostics").GetArrayLength()));
    }

    [Test]
    public async Task Validate_MissingFile_IsAFindingWithItsId()
    {
        var run = await RunAsync("rules", "validate", Path.Combine(_temp, "missing.yaml"));

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Failed));
        Assert.That(run.Out, Does.Contain("error TB2022:").And.Contain("no such file"));
    }

    [TestCase("rules", "validate", TestName = "Validate_WithoutPaths_IsAUsageError")]
    [TestCase("rules", "validate", "config/rules", "--format", "xml", TestName = "Validate_WithAnUnknownFormat_IsAUsageError")]
    [TestCase("rules", "validate", "config/rules", "--config", "/nonexistent/tokenbroker.yaml", TestName = "Validate_WithAMissingConfigFile_IsAUsageError")]
    [TestCase("rules", "lint", "--no-such-option", TestName = "Lint_WithAnUnknownOption_IsAUsageError")]
    [TestCase("rules", "explain", "--provider", "github", TestName = "Explain_WithoutTokenOrClaims_IsAUsageError")]
    [TestCase("rules", "explain", "--token", "a.b.c", "--claims", "x.json", TestName = "Explain_WithTokenAndClaims_IsAUsageError")]
    [TestCase("rules", "explain", "--token", "not-a-jwt", "--provider", "github", TestName = "Explain_WithAMalformedToken_IsAUsageError")]
    [TestCase("rules", "test", TestName = "Test_WithoutPaths_IsAUsageError")]
    [TestCase("rules", "test", "/nonexistent/tests", TestName = "Test_WithAMissingDirectory_IsAUsageError")]
    [TestCase("rules", "schema", "extra", TestName = "Schema_WithAnArgument_IsAUsageError")]
    [TestCase("rules", TestName = "Rules_WithoutAVerb_IsAUsageError")]
    public async Task UsageErrors_ExitTwo(params string[] args)
    {
        var run = await RunAsync(args);

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Usage), run.Out + run.Err);
    }

    [Test]
    public async Task Validate_AgainstAConfigurationWithAnotherProvider_UsesItsProviders()
    {
        var config = Write("tokenbroker.yaml", """
            TokenBroker:
              Providers:
                ghes:
                  Kind: github
                  Issuer: https://ghes.example.com/_services/token
            """);
        var rules = Write("rules/ghes.yaml", """
            rules:
              - id: r1
                provider: ghes
                when: { repository_id: "1" }
                grant: { audiences: [a], stage: deploy, subject: s }
            """);

        var withConfig = await RunAsync("rules", "validate", rules, "--config", config);
        var withoutConfig = await RunAsync("rules", "validate", rules);

        Assert.That(withConfig.Code, Is.EqualTo(BrokerCli.Ok), withConfig.Out + withConfig.Err);
        Assert.That(withoutConfig.Code, Is.EqualTo(BrokerCli.Failed));
        Assert.That(withoutConfig.Out, Does.Contain("TB2007").And.Contain("configured: github, gitlab"));
    }

    [Test]
    public async Task Lint_AgainstAConfigurationWithALowerMaxTtl_ReportsEveryRuleAboveIt()
    {
        var config = Write("tokenbroker.yaml", """
            TokenBroker:
              Rules:
                MaxTtl: "00:12:00"
            """);

        var run = await RunAsync("rules", "lint", Repo("config/rules"), "--config", config);

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Failed), run.Out + run.Err);
        Assert.That(run.Out.Split('\n').Count(l => l.Contains("error TB2013: ttl", StringComparison.Ordinal)), Is.EqualTo(3), "15m, 30m and 30m; the 10m and 5m rules are within 12m");
        Assert.That(run.Out, Does.Contain("fix: lower 'ttl' to 12m or less"));
    }

    // lint

    [Test]
    public async Task Lint_SampleRules_HasOnlyWarnings_AndExitsZero_OrOneWhenStrict()
    {
        var plain = await RunAsync("rules", "lint", Repo("config/rules"));
        var strict = await RunAsync("rules", "lint", Repo("config/rules"), "--strict");

        Assert.That(plain.Code, Is.EqualTo(BrokerCli.Ok), plain.Out);
        Assert.That(plain.Out, Does.Contain("warning TB2105:").And.Contain("    fix: "));
        Assert.That(strict.Code, Is.EqualTo(BrokerCli.Failed));
    }

    [Test]
    public async Task Lint_WithoutPaths_LintsWhatServeWouldLoad()
    {
        var run = await RunAsync("rules", "lint", "--format", "json");

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Ok), run.Out + run.Err);
        using var json = JsonDocument.Parse(run.Out);
        Assert.That(json.RootElement.GetProperty("diagnostics")[0].GetProperty("file").GetString(), Is.EqualTo("config/rules/10-payments.yaml"));
        Assert.That(json.RootElement.GetProperty("diagnostics")[0].GetProperty("rule").GetString(), Is.EqualTo("payments-ci-read"));
        Assert.That(json.RootElement.GetProperty("summary").GetProperty("rules").GetInt32(), Is.EqualTo(6));
    }

    [Test]
    public async Task Lint_WithALintError_ExitsOne()
    {
        var file = Write("pr.yaml", """
            rules:
              - id: deploy
                provider: github
                when: { owner_id: "5001", repository_id: "1", ref: refs/heads/main }
                grant: { audiences: [sts.amazonaws.com], stage: deploy, subject: "repo:{repository}" }
              - id: pr-plan
                provider: github
                when: { owner_id: "5001", repository_id: "1", event: pull_request }
                grant: { audiences: [sts.amazonaws.com], stage: read, subject: "repo:{repository}" }
            """);

        var lint = await RunAsync("rules", "lint", file);
        var validate = await RunAsync("rules", "validate", file);

        Assert.That(lint.Code, Is.EqualTo(BrokerCli.Failed), lint.Out);
        Assert.That(lint.Out, Does.Contain($"{file}:6:5: error TB2104:"));
        Assert.That(validate.Code, Is.EqualTo(BrokerCli.Ok), "validate checks the schema and load errors only");
    }

    // schema

    [Test]
    public async Task Schema_PrintsTheCommittedSchema()
    {
        var run = await RunAsync("rules", "schema");

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Ok));
        Assert.That(run.Out, Is.EqualTo(File.ReadAllText(Repo("config/rules.schema.json"))));
    }

    // explain

    [Test]
    public async Task Explain_GrantedClaims_ExitsZero_AndShowsTheIssuedClaims()
    {
        var run = await RunAsync("rules", "explain", "--provider", "github", "--claims", Repo("samples/fixtures/github.json") + "#push_main_production", "--audience", "sts.amazonaws.com");

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Ok), run.Out + run.Err);
        Assert.That(run.Out, Does.Contain("Decision: GRANTED by rule payments-deploy-prod").And.Contain("\"sub\": \"github:octo-org/payments:production\""));
    }

    [Test]
    public async Task Explain_RefusedClaims_ExitsOne_AndShowsTheRefusal()
    {
        var run = await RunAsync("rules", "explain", "--provider", "github", "--claims", Repo("samples/fixtures/github.json") + "#pull_request_from_fork", "--audience", "sts.amazonaws.com", "--format", "json");

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Failed), run.Out + run.Err);
        using var json = JsonDocument.Parse(run.Out);
        Assert.That(json.RootElement.GetProperty("decision").GetProperty("error").GetString(), Is.EqualTo("invalid_target"));
        Assert.That(json.RootElement.GetProperty("decision").GetProperty("error_id").GetString(), Is.EqualTo("TB1202"));
    }

    [Test]
    public async Task Explain_Token_IsDecodedWithoutVerification_AndSaysSo_AndPicksTheProviderByIssuer()
    {
        var payload = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["iss"] = "https://token.actions.githubusercontent.com",
            ["repository_owner_id"] = "5001",
            ["repository_id"] = "900101",
            ["repository"] = "octo-org/payments",
            ["ref"] = "refs/heads/feature",
        });
        var token = $"{JwtParts.B64("{\"alg\":\"RS256\"}")}.{JwtParts.B64(payload)}.{JwtParts.B64("not a signature")}";

        var run = await RunAsync("rules", "explain", "--token", token, "--audience", "https://artifacts.internal");

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Ok), run.Out + run.Err);
        Assert.That(run.Out, Does.Contain("DECODED WITHOUT SIGNATURE VERIFICATION"));
        Assert.That(run.Out, Does.Contain("Provider: github"));
        Assert.That(run.Out, Does.Contain("Decision: GRANTED by rule payments-ci-read"));
        Assert.That(run.Out, Does.Not.Contain("Note:"), "the token passes the checks explain can see");
    }

    [Test]
    public async Task Explain_Token_ThatTheBrokerWouldRefuseBeforeAnyRule_SaysSo()
    {
        var payload = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["iss"] = "https://token.actions.githubusercontent.com",
            ["aud"] = "https://someone-else.example",
            ["exp"] = 1700000000,
            ["repository_owner_id"] = "5001",
            ["repository_id"] = "900101",
        });
        var token = $"{JwtParts.B64("{\"alg\":\"RS256\"}")}.{JwtParts.B64(payload)}.{JwtParts.B64("sig")}";

        var run = await RunAsync("rules", "explain", "--token", token, "--audience", "https://artifacts.internal", "--format", "json");

        using var json = JsonDocument.Parse(run.Out);
        var notes = json.RootElement.GetProperty("notes").EnumerateArray().Select(n => n.GetString()).ToList();
        Assert.That(notes, Has.Count.EqualTo(2), string.Join("\n", notes));
        Assert.That(notes[0], Does.Contain("TB1111").And.Contain("https://someone-else.example"));
        Assert.That(notes[1], Does.Contain("TB1112").And.Contain("2023-11-14T22:13:20Z"));
        Assert.That(json.RootElement.GetProperty("input").GetProperty("signature_verified").GetBoolean(), Is.False);
    }

    [Test]
    public async Task Explain_FixtureFileWithoutAName_ListsTheTokensToChooseFrom()
    {
        var run = await RunAsync("rules", "explain", "--provider", "github", "--claims", Repo("samples/fixtures/github.json"));

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Usage));
        Assert.That(run.Err, Does.Contain("push_main_production").And.Contain("#NAME"));
    }

    [Test]
    public async Task Explain_WithRulesThatDoNotLoad_IsAUsageError_AndNamesTheErrors()
    {
        var rules = Write("bad.yaml", UnpinnedRule);

        var run = await RunAsync("rules", "explain", "--provider", "github", "--claims", Repo("samples/fixtures/github.json") + "#push_main_production", "--rules", rules);

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Usage));
        Assert.That(run.Err, Does.Contain("the rules do not load").And.Contain("TB2008"));
    }

    // test

    [Test]
    public async Task Test_ShippedPolicyTests_PassAgainstTheSampleRules()
    {
        var run = await RunAsync("rules", "test", Repo("config/tests"), "--rules", Repo("config/rules"));

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Ok), run.Out + run.Err);
        Assert.That(run.Out, Does.Match(@"rules test: [1-9][0-9]* passed, 0 failed\r?\n$"));
        Assert.That(run.Out, Does.Not.Contain("FAIL"));
    }

    [Test]
    public void Test_ShippedPolicyTests_AllowEverySampleRuleAtLeastOnce()
    {
        var text = string.Concat(Directory.EnumerateFiles(Repo("config/tests"), "*.yaml").Select(File.ReadAllText));
        string[] rules = ["payments-deploy-prod", "payments-release-tags", "payments-ci-read", "infra-staging-plan", "infra-production-apply", "infra-mr-plan"];

        Assert.That(rules, Has.All.Matches<string>(r => text.Contains($"rule: {r}", StringComparison.Ordinal)));
    }

    [Test]
    public async Task Test_WithAWrongExpectation_FailsThatCase_AndExitsOne()
    {
        var file = Write("t.yaml", $$"""
            version: 1
            tests:
              - name: expects the wrong rule
                provider: github
                fixture: {{Repo("samples/fixtures/github.json")}}#push_main_production
                request: { audiences: [sts.amazonaws.com] }
                expect: { allow: { rule: payments-ci-read } }
              - name: expects the wrong error
                provider: github
                fixture: {{Repo("samples/fixtures/github.json")}}#lookalike_repository
                request: { audiences: [sts.amazonaws.com] }
                expect: { deny: { error_id: TB1202 } }
              - name: expects a claim value the token does not have
                provider: github
                fixture: {{Repo("samples/fixtures/github.json")}}#push_main_production
                request: { audiences: [sts.amazonaws.com] }
                expect: { allow: { rule: payments-deploy-prod, claims: { stage: read } } }
              - name: expects allow but the inline claims match nothing
                provider: gitlab
                claims: { namespace_id: "72", project_id: "4242" }
                request: { audiences: [https://iac.internal/state] }
                expect: { allow: { rule: infra-mr-plan } }
              - name: passes
                provider: github
                fixture: {{Repo("samples/fixtures/github.json")}}#lookalike_repository
                request: { audiences: [sts.amazonaws.com] }
                expect: { deny: { error: invalid_request, error_id: TB1201 } }
            """);

        var run = await RunAsync("rules", "test", file, "--rules", Repo("config/rules"));

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Failed), run.Out);
        Assert.That(run.Out, Does.Contain("expects the wrong rule: expected allow by rule 'payments-ci-read', got allow by rule 'payments-deploy-prod'"));
        Assert.That(run.Out, Does.Contain("expects the wrong error: expected deny * TB1202, got deny invalid_request TB1201"));
        Assert.That(run.Out, Does.Contain("issued claim 'stage' is \"deploy\"; expected \"read\""));
        Assert.That(run.Out, Does.Contain("expects allow but the inline claims match nothing: expected allow by rule 'infra-mr-plan', got deny invalid_request TB1201"));
        Assert.That(run.Out, Does.Contain($"PASS  {file}:23:5  passes"));
        Assert.That(run.Out, Does.EndWith("rules test: 1 passed, 4 failed" + Environment.NewLine));
    }

    [Test]
    public async Task Test_MalformedFile_ReportsEveryProblemWithPositions_AndFails()
    {
        var file = Write("bad.yaml", """
            version: 1
            tests:
              - name: typo
                provider: github
                claimz: { a: b }
                request: { audiences: [x], scope: [y] }
                expect: { allow: { rule: no-such-rule } }
            """);

        var run = await RunAsync("rules", "test", file, "--rules", Repo("config/rules"));

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Failed));
        Assert.That(run.Out, Does.Contain($"{file}:5:5: error TB2002: unknown key 'claimz'"));
        Assert.That(run.Out, Does.Contain($"{file}:6:32: error TB2002: unknown key 'scope'"));
        Assert.That(run.Out, Does.Contain("error TB2003: 'rule': no rule has id 'no-such-rule'"));
        Assert.That(run.Out, Does.Contain("error TB2004: a test case needs 'fixture', 'claims' or both"));
        Assert.That(run.Out, Does.EndWith("rules test: 0 passed, 1 failed" + Environment.NewLine));
    }

    [Test]
    public async Task Test_FixtureOverrides_RemoveAndReplaceClaims()
    {
        var file = Write("t.yaml", $$"""
            tests:
              - name: without an environment the deploy rule does not match
                provider: github
                fixture: {{Repo("samples/fixtures/github.json")}}#push_main_production
                claims: { environment: ~ }
                request: { audiences: [https://artifacts.internal] }
                expect: { allow: { rule: payments-ci-read, claims: { environment: ~, branch: main } } }
            """);

        var run = await RunAsync("rules", "test", file, "--rules", Repo("config/rules"));

        Assert.That(run.Code, Is.EqualTo(BrokerCli.Ok), run.Out);
    }
}
