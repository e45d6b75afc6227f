using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Providers;
using YamlDotNet.RepresentationModel;

namespace TokenBroker.Tests;

/// <summary>Samples stay true: their rules compile, their YAML parses.</summary>
[TestFixture]
public sealed class SamplesTests
{
    private static string Root
    {
        get
        {
            var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "TokenBroker.sln")))
            {
                dir = dir.Parent;
            }

            return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
        }
    }

    public static IEnumerable<string> SampleRuleFiles() =>
        Directory.EnumerateFiles(Path.Combine(Root, "samples"), "rules.yaml", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(Root, f)).Order(StringComparer.Ordinal);

    public static IEnumerable<string> SampleYamlFiles() =>
        Directory.EnumerateFiles(Path.Combine(Root, "samples"), "*.y*ml", SearchOption.AllDirectories)
            .Concat(Directory.EnumerateFiles(Path.Combine(Root, "samples"), ".gitlab-ci.yml", SearchOption.AllDirectories))
            .Select(f => Path.GetRelativePath(Root, f)).Distinct().Order(StringComparer.Ordinal);

    [TestCaseSource(nameof(SampleRuleFiles))]
    public void SampleRules_CompileAgainstTheDefaultProviders(string file)
    {
        var providers = new Dictionary<string, ProviderDescriptor>
        {
            ["github"] = new("github", ProviderKind.GitHub, true, ClaimVocabulary.GitHub),
            ["gitlab"] = new("gitlab", ProviderKind.GitLab, true, ClaimVocabulary.GitLab),
        };

        var result = new RuleCompiler(providers, new RuleLoadOptions()).Compile([new RuleSource(file, File.ReadAllText(Path.Combine(Root, file)))]);

        Assert.That(result.Diagnostics.Where(d => d.Severity == TokenBroker.Rules.Diagnostics.RuleSeverity.Error), Is.Empty);
    }

    [TestCaseSource(nameof(SampleYamlFiles))]
    public void SampleYaml_Parses(string file)
    {
        var stream = new YamlStream();

        Assert.DoesNotThrow(() => stream.Load(new StringReader(File.ReadAllText(Path.Combine(Root, file)))));
        Assert.That(stream.Documents, Is.Not.Empty);
    }

    [Test]
    public void ThereAreSamplesToCheck()
    {
        Assert.That(SampleRuleFiles().Count(), Is.GreaterThanOrEqualTo(2));
        Assert.That(SampleYamlFiles().Count(), Is.GreaterThanOrEqualTo(6));
    }

    [Test]
    public void AzureSample_BrokerConfiguration_BindsWithoutUnknownKeys()
    {
        var errors = new List<string>();
        var values = TokenBroker.Configuration.YamlConfigurationFile.Read(Path.Combine(Root, "samples/cloud/azure/broker.yaml"));
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();

        var options = TokenBroker.Configuration.SettingsResolver.Bind(configuration, errors);

        Assert.That(errors, Is.Empty);
        Assert.That(options.Signing.AudienceAlgorithms.Single().Algorithm, Is.EqualTo("RS256"));
    }

    [Test]
    public void KubernetesSample_BrokerConfiguration_BindsWithoutUnknownKeys()
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(File.ReadAllText(Path.Combine(Root, "samples/kubernetes/tokenbroker.yaml"))));
        var configMap = stream.Documents.Select(d => (YamlMappingNode)d.RootNode)
            .First(d => d.Children.TryGetValue(new YamlScalarNode("data"), out var data) && ((YamlMappingNode)data).Children.ContainsKey(new YamlScalarNode("tokenbroker.yaml")));
        var embedded = ((YamlScalarNode)((YamlMappingNode)configMap[new YamlScalarNode("data")])[new YamlScalarNode("tokenbroker.yaml")]).Value!;
        var file = Path.GetTempFileName() + ".yaml";
        File.WriteAllText(file, embedded);
        try
        {
            var errors = new List<string>();
            var configuration = new ConfigurationBuilder().AddInMemoryCollection(TokenBroker.Configuration.YamlConfigurationFile.Read(file)).Build();

            var options = TokenBroker.Configuration.SettingsResolver.Bind(configuration, errors);

            Assert.That(errors, Is.Empty);
            Assert.That(options.State.Store, Is.EqualTo("redis"));
        }
        finally
        {
            File.Delete(file);
        }
    }
}
