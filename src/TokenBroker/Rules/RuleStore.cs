using System.Reflection;
using TokenBroker.Configuration;
using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Linting;
using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Model;

namespace TokenBroker.Rules;

/// <summary>
/// Holds the current rule set. Rules come from the configured paths, or from the sample rules built into the
/// executable when none are configured. A load with errors never replaces a good rule set.
/// </summary>
internal sealed class RuleStore(ResolvedSettings settings)
{
    private const string EmbeddedPrefix = "TokenBroker.DefaultRules.";

    private volatile RuleSet? _current;

    /// <summary>The rule set in force, or null before the first successful load.</summary>
    public RuleSet? Current => _current;

    /// <summary>Where the rules come from, for logs.</summary>
    public string Origin => settings.RulePaths.Count > 0 ? string.Join(", ", settings.RulePaths) : "built-in sample rules (config/rules)";

    /// <summary>Compiles and lints the rules; on errors keeps the previous set. Returns every diagnostic, warnings included.</summary>
    public RuleLoadResult Load()
    {
        var readErrors = new List<string>();
        var sources = settings.RulePaths.Count > 0 ? RuleSource.FromPaths(settings.RulePaths, readErrors) : EmbeddedSources();
        // Lint runs with the compiler: lint errors stop the load like compile errors; warnings are returned to be logged.
        var result = RuleLinter.CompileAndLint(settings.ProviderDescriptors, settings.RuleLoad, sources);
        if (readErrors.Count > 0)
        {
            var diagnostics = readErrors
                .Select(e => new RuleDiagnostic(RuleErrors.FileUnreadable, RuleSeverity.Error, new SourceLocation("(rules)", 0, 0), e))
                .Concat(result.Diagnostics)
                .ToList();
            return new RuleLoadResult(null, diagnostics);
        }

        if (result.RuleSet is not null)
        {
            _current = result.RuleSet;
        }

        return result;
    }

    /// <summary>The sample rules compiled into the executable.</summary>
    public static IReadOnlyList<RuleSource> EmbeddedSources()
    {
        var assembly = Assembly.GetExecutingAssembly();
        return assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(EmbeddedPrefix, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .Select(n =>
            {
                using var stream = assembly.GetManifestResourceStream(n)!;
                using var reader = new StreamReader(stream);
                return new RuleSource("config/rules/" + n[EmbeddedPrefix.Length..], reader.ReadToEnd());
            })
            .ToList();
    }
}
