using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Model;

namespace TokenBroker.Rules.Tests.Support;

/// <summary>Compiles rule text the way the broker does, against <see cref="TestProviders.All"/>.</summary>
internal static class RuleFiles
{
    /// <summary>The file name single-source compilations report in diagnostics.</summary>
    public const string FileName = "rules.yaml";

    public static RuleLoadResult Compile(string yaml, RuleLoadOptions? options = null) =>
        Compile(options, new RuleSource(FileName, yaml));

    public static RuleLoadResult Compile(RuleLoadOptions? options, params RuleSource[] sources) =>
        new RuleCompiler(TestProviders.All, options ?? new RuleLoadOptions()).Compile(sources);

    /// <summary>Compiles text that must be valid, failing the test with the diagnostics otherwise.</summary>
    public static RuleSet CompileValid(string yaml)
    {
        var result = Compile(yaml);
        Assert.That(result.Diagnostics, Is.Empty, () => "rules expected to compile:\n" + string.Join("\n", result.Diagnostics));
        Assert.That(result.RuleSet, Is.Not.Null);
        return result.RuleSet!;
    }

    /// <summary>
    /// Compiles one condition, written as YAML, on a claim of a private GitHub issuer and returns it, so that
    /// operators are tested through the same path rules take.
    /// </summary>
    public static Condition CompileCondition(string conditionYaml, string claim = "ref") =>
        CompileValid($"""
            rules:
              - id: r1
                provider: ghes
                when:
                  {claim}: {conditionYaml}
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """).Rules.Single().Conditions.Single().Condition;

    /// <summary>Quotes text as a YAML single-quoted scalar, where only the quote itself needs escaping.</summary>
    public static string Quote(string text) => "'" + text.Replace("'", "''", StringComparison.Ordinal) + "'";

    /// <summary>The files under config/rules, copied next to the test assembly, in the order the broker loads them.</summary>
    public static IReadOnlyList<RuleSource> SampleSources()
    {
        var errors = new List<string>();
        var sources = RuleSource.FromPaths([Path.Combine(TestContext.CurrentContext.TestDirectory, "rules")], errors);
        Assert.That(errors, Is.Empty);
        Assert.That(sources, Is.Not.Empty);
        return sources;
    }

    private static readonly Lazy<RuleLoadResult> Samples = new(() => Compile(null, [.. SampleSources()]));

    /// <summary>The sample rules compiled once (they are immutable, so every test may share them).</summary>
    public static RuleLoadResult SampleResult => Samples.Value;

    public static RuleSet SampleRules
    {
        get
        {
            Assert.That(SampleResult.Diagnostics, Is.Empty, () => string.Join("\n", SampleResult.Diagnostics));
            return SampleResult.RuleSet!;
        }
    }
}
