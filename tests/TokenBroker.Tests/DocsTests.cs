using System.Text.RegularExpressions;
using TokenBroker.Errors;

namespace TokenBroker.Tests;

/// <summary>Keeps the docs true: every error the broker can answer with is documented.</summary>
[TestFixture]
public sealed class DocsTests
{
    private static string RepoFile(string relative)
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "TokenBroker.sln")))
        {
            dir = dir.Parent;
        }

        Assert.That(dir, Is.Not.Null, "repository root not found");
        return File.ReadAllText(Path.Combine(dir!.FullName, relative));
    }

    [Test]
    public void ErrorsDoc_ListsEveryErrorInTheCatalogueWithItsCodeAndStatus()
    {
        var doc = RepoFile("docs/errors.md");

        foreach (var error in BrokerErrors.All)
        {
            var row = doc.Split('\n').FirstOrDefault(l => l.StartsWith($"| {error.Id} ", StringComparison.Ordinal));
            Assert.That(row, Is.Not.Null, $"{error.Id} is missing from docs/errors.md");
            Assert.That(row, Does.Contain(error.Code).And.Contain(error.Status.ToString(System.Globalization.CultureInfo.InvariantCulture)), error.Id);
        }
    }

    [Test]
    public void ErrorIds_AreUnique()
    {
        Assert.That(BrokerErrors.All.Select(e => e.Id), Is.Unique);
        Assert.That(BrokerErrors.All.Select(e => e.Id), Has.All.Match(new Regex(@"^TB1\d{3}$")));
    }

    [Test]
    public void RulesDoc_ListsEveryRuleDiagnostic()
    {
        var doc = RepoFile("docs/rules.md");
        var ids = typeof(TokenBroker.Rules.Diagnostics.RuleErrors).GetFields().Select(f => (string)f.GetValue(null)!);

        Assert.That(ids, Has.All.Matches<string>(id => doc.Contains(id, StringComparison.Ordinal)));
    }

    [Test]
    public void RulesDoc_WorkedExamples_CompileAndLintWithoutFindings()
    {
        var doc = RepoFile("docs/rules.md").ReplaceLineEndings("\n");
        var section = doc[doc.IndexOf("\n## Worked examples", StringComparison.Ordinal)..];
        var blocks = Regex.Matches(section, "```yaml\n(rules:\n.*?)```", RegexOptions.Singleline).Select(m => m.Groups[1].Value).ToList();
        var providers = new Dictionary<string, TokenBroker.Rules.Providers.ProviderDescriptor>(StringComparer.Ordinal)
        {
            ["github"] = new("github", TokenBroker.Rules.Providers.ProviderKind.GitHub, SharedIssuer: true, TokenBroker.Rules.Providers.ClaimVocabulary.GitHub),
            ["gitlab"] = new("gitlab", TokenBroker.Rules.Providers.ProviderKind.GitLab, SharedIssuer: true, TokenBroker.Rules.Providers.ClaimVocabulary.GitLab),
            ["gitlab-corp"] = new("gitlab-corp", TokenBroker.Rules.Providers.ProviderKind.GitLab, SharedIssuer: false, TokenBroker.Rules.Providers.ClaimVocabulary.GitLab),
        };

        Assert.That(blocks, Has.Count.GreaterThanOrEqualTo(8), "one rules block per worked example");
        foreach (var block in blocks)
        {
            var result = TokenBroker.Rules.Linting.RuleLinter.CompileAndLint(providers, new TokenBroker.Rules.Loading.RuleLoadOptions(), [new TokenBroker.Rules.Loading.RuleSource("docs/rules.md", block)]);

            Assert.That(result.Diagnostics, Is.Empty, () => block + "\n" + string.Join("\n", result.Diagnostics));
        }
    }

    [Test]
    public void Readme_DocumentsEveryRulesVerb()
    {
        var readme = RepoFile("README.md");

        Assert.That(new[] { "rules validate", "rules lint", "rules explain", "rules test", "rules schema" }, Has.All.Matches<string>(verb => readme.Contains(verb, StringComparison.Ordinal)));
    }
    [Test]
    public void ObservabilityDoc_NamesEveryMetricAndTraceTagInTheCode()
    {
        var doc = RepoFile("docs/observability.md");
        var names = Directory.EnumerateFiles(RepoFileDirectory("src"), "*.cs", SearchOption.AllDirectories)
            .SelectMany(f => Regex.Matches(File.ReadAllText(f), "\"(tokenbroker\\.[a-z_.]+)\"").Select(m => m.Groups[1].Value))
            .Where(n => n != "tokenbroker.dll")
            .Distinct()
            .ToList();

        Assert.That(names, Does.Contain("tokenbroker.exchanges").And.Contain("tokenbroker.exchange.duration"), "the scan finds the instruments");
        Assert.That(names, Has.All.Matches<string>(n => doc.Contains($"`{n}`", StringComparison.Ordinal)), "every metric and tag name is documented in docs/observability.md");
    }

    [Test]
    public void AuditDoc_ListsEveryAuditEventField()
    {
        var doc = RepoFile("docs/audit.md");
        var fields = typeof(TokenBroker.Audit.AuditEvent).GetProperties().Select(p => System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(p.Name));

        Assert.That(fields, Has.All.Matches<string>(f => doc.Contains($"| `{f}` |", StringComparison.Ordinal)));
    }

    private static string RepoFileDirectory(string relative)
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "TokenBroker.sln")))
        {
            dir = dir.Parent;
        }

        return Path.Combine(dir!.FullName, relative);
    }
}
