using TokenBroker.Cli;
using TokenBroker.Hosting;
using TokenBroker.Rules;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Rules.Linting;
using TokenBroker.Rules.Providers;

namespace TokenBroker.Tests.Cli;

/// <summary>
/// The explain output, human and JSON, compared with golden files under Cli/Golden. The rules are the built-in
/// samples, the time is fixed, and the claims come from samples/fixtures, so the output is byte-stable. To accept
/// an intended change, run the tests with UPDATE_GOLDEN=1 and review the diff.
/// </summary>
[TestFixture]
public sealed class ExplainGoldenTests
{
    private static readonly DateTimeOffset Now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static IEnumerable<TestCaseData> Cases()
    {
        static TestCaseData Case(string golden, string provider, string fixture, string[] audiences, string[]? scopes = null, Dictionary<string, string?>? overrides = null) =>
            new TestCaseData(golden, provider, fixture, audiences, scopes, overrides).SetArgDisplayNames(golden);

        yield return Case("granted-deploy", "github", "samples/fixtures/github.json#push_main_production", ["sts.amazonaws.com"]);
        yield return Case("refused-pull-request", "github", "samples/fixtures/github.json#pull_request_from_fork", ["sts.amazonaws.com"]);
        yield return Case("refused-hostile-ref", "github", "samples/fixtures/github.json#push_main_production", ["sts.amazonaws.com"],
            overrides: new() { ["ref"] = "refs/heads/main\n", ["repository"] = "octo-org/p\u0430yments" });
        yield return Case("refused-scope", "gitlab", "samples/fixtures/gitlab.json#merge_request_pipeline", ["https://iac.internal/state"], ["state:write"]);
        yield return Case("guarded-merge-request", "gitlab", "samples/fixtures/gitlab.json#merge_request_pipeline", ["https://iac.internal/state"],
            overrides: new() { ["environment"] = "staging", ["ref_protected"] = "true" });
    }

    [TestCaseSource(nameof(Cases))]
    public void Explain_MatchesTheGoldenFiles(string golden, string provider, string fixture, string[] audiences, string[]? scopes, Dictionary<string, string?>? overrides)
    {
        var errors = new List<string>();
        var settings = BrokerApp.ResolveSettings((string?)null, errors)!;
        Assert.That(errors, Is.Empty);
        var rules = RuleLinter.CompileAndLint(settings.ProviderDescriptors, settings.RuleLoad, RuleStore.EmbeddedSources()).RuleSet!;
        var claims = ClaimFiles.Read(fixture, RulesCliTests.RepoRoot, out var error)!;
        Assert.That(error, Is.Null);
        foreach (var (name, value) in overrides ?? [])
        {
            if (value is null)
            {
                claims.Remove(name);
            }
            else
            {
                claims[name] = value;
            }
        }

        var explanation = Explanation.Create(
            rules,
            settings.Providers.Single(p => p.Name == provider).Descriptor,
            new DictionaryJobClaims(claims),
            new PolicyRequest(provider, audiences, scopes),
            new ExplainSource("claims", $"claims from {fixture}", SignatureVerified: false),
            settings.Issuer,
            Now);

        Compare($"{golden}.txt", explanation.ToText());
        Compare($"{golden}.json", explanation.ToJson() + "\n");
    }

    private static void Compare(string name, string actual)
    {
        var path = Path.Combine(RulesCliTests.RepoRoot, "tests", "TokenBroker.Tests", "Cli", "Golden", name);
        actual = actual.ReplaceLineEndings("\n");
        if (Environment.GetEnvironmentVariable("UPDATE_GOLDEN") == "1")
        {
            File.WriteAllText(path, actual);
        }

        Assert.That(File.Exists(path), Is.True, $"golden file {name} is missing; run with UPDATE_GOLDEN=1 to create it");
        Assert.That(actual, Is.EqualTo(File.ReadAllText(path)), $"explain output differs from Golden/{name}");
    }
}
