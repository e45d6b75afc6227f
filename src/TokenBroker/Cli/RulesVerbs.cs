using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;
using TokenBroker.Configuration;
using TokenBroker.Hosting;
using TokenBroker.Rules;
using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Rules.Linting;
using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Providers;
using TokenBroker.Tokens;

namespace TokenBroker.Cli;

/// <summary>What <c>rules explain</c> is asked.</summary>
internal sealed record ExplainArguments
{
    public string? Token { get; init; }
    public string? ClaimsFile { get; init; }
    public string? Provider { get; init; }
    public IReadOnlyList<string> Audiences { get; init; } = [];

    /// <summary>Null when no <c>--scope</c> was given (the request then has no scope parameter).</summary>
    public IReadOnlyList<string>? Scopes { get; init; }
    public IReadOnlyList<string> RulePaths { get; init; } = [];
    public string? ConfigFile { get; init; }
    public bool Json { get; init; }
}

/// <summary>
/// The <c>tokenbroker rules</c> verbs: validate, lint, explain, test, schema. Output goes to the writers given, so
/// tests read it directly. Exit codes: 0 ok, 1 findings or failures (or a refusal, for explain), 2 usage or
/// configuration error.
/// </summary>
internal sealed class RulesVerbs(TextWriter output, TextWriter errors, TimeProvider time)
{
    private static readonly JsonWriterOptions JsonOptions = new() { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary><c>rules validate</c>: the compiler's strict checks, every error at once.</summary>
    public int Validate(IReadOnlyList<string> paths, string? configFile, bool json)
    {
        if (Settings(configFile) is not { } settings)
        {
            return BrokerCli.Usage;
        }

        var sources = Read(paths, out var readErrors);
        var result = new RuleCompiler(settings.ProviderDescriptors, settings.RuleLoad).Compile(sources);
        var diagnostics = readErrors.Concat(result.Diagnostics).ToList();
        return Report(diagnostics, sources.Count, readErrors.Count == 0 ? result.RuleSet?.Rules.Count : null, json, failOnWarnings: false);
    }

    /// <summary><c>rules lint</c>: validate, then the safety findings (TB21xx). With no paths, what <c>serve</c> would load.</summary>
    public int Lint(IReadOnlyList<string> paths, string? configFile, bool json, bool strict)
    {
        if (Settings(configFile) is not { } settings)
        {
            return BrokerCli.Usage;
        }

        var sources = Sources(paths, settings, out var readErrors);
        var result = RuleLinter.CompileAndLint(settings.ProviderDescriptors, settings.RuleLoad, sources);
        var diagnostics = readErrors.Concat(result.Diagnostics).ToList();
        return Report(diagnostics, sources.Count, readErrors.Count == 0 ? result.RuleSet?.Rules.Count : null, json, failOnWarnings: strict);
    }

    /// <summary><c>rules schema</c>: the JSON Schema of rules files.</summary>
    public int Schema()
    {
        output.Write(RuleSchema.Generate());
        return BrokerCli.Ok;
    }

    /// <summary><c>rules explain</c>: a dry run of one request. Exit 0 when it would be granted, 1 when refused.</summary>
    public int Explain(ExplainArguments args)
    {
        if ((args.Token is null) == (args.ClaimsFile is null))
        {
            return UsageError("rules explain: give exactly one of --token <jwt> or --claims <file.json[#name]>");
        }

        if (Settings(args.ConfigFile) is not { } settings)
        {
            return BrokerCli.Usage;
        }

        Dictionary<string, string>? claims;
        ExplainSource source;
        string? error;
        if (args.Token is not null)
        {
            claims = DecodeUnverified(args.Token, out error);
            source = new ExplainSource("token", "token", SignatureVerified: false);
        }
        else
        {
            claims = ClaimFiles.Read(args.ClaimsFile!, Directory.GetCurrentDirectory(), out error);
            source = new ExplainSource("claims", $"claims from {args.ClaimsFile}", SignatureVerified: false);
        }

        if (claims is null)
        {
            return UsageError($"rules explain: {error}");
        }

        var provider = ChooseProvider(settings, args.Provider, claims, out error);
        if (provider is null)
        {
            return UsageError($"rules explain: {error}");
        }

        var ruleSet = LoadForUse(args.RulePaths, settings);
        if (ruleSet is null)
        {
            return BrokerCli.Usage;
        }

        var request = new PolicyRequest(provider.Name, args.Audiences, args.Scopes);
        var explanation = Explanation.Create(ruleSet, provider.Descriptor, new DictionaryJobClaims(claims), request, source, settings.Issuer, time.GetUtcNow())
            with { Notes = PreRuleNotes(provider, claims, time.GetUtcNow()) };
        if (args.Json)
        {
            output.WriteLine(explanation.ToJson());
        }
        else
        {
            output.Write(explanation.ToText());
        }

        return explanation.Decision.IsGranted ? BrokerCli.Ok : BrokerCli.Failed;
    }

    /// <summary><c>rules test</c>: runs the policy tests under the paths against the rules.</summary>
    public int Test(IReadOnlyList<string> paths, IReadOnlyList<string> rulePaths, string? configFile)
    {
        if (Settings(configFile) is not { } settings)
        {
            return BrokerCli.Usage;
        }

        var files = new List<string>();
        foreach (var path in paths)
        {
            if (Directory.Exists(path))
            {
                var found = Directory.EnumerateFiles(path)
                    .Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".yml", StringComparison.Ordinal))
                    .Order(StringComparer.Ordinal)
                    .ToList();
                if (found.Count == 0)
                {
                    return UsageError($"rules test: {path}: directory holds no .yaml or .yml file");
                }

                files.AddRange(found);
            }
            else if (File.Exists(path))
            {
                files.Add(path);
            }
            else
            {
                return UsageError($"rules test: {path}: no such file or directory");
            }
        }

        var ruleSet = LoadForUse(rulePaths, settings);
        if (ruleSet is null)
        {
            return BrokerCli.Usage;
        }

        var runner = new PolicyTestRunner(settings, ruleSet, time);
        var passed = 0;
        var failed = 0;
        foreach (var file in files)
        {
            foreach (var result in runner.RunFile(file))
            {
                if (result.Passed)
                {
                    passed++;
                    output.WriteLine($"PASS  {result.Location}  {result.Name}");
                }
                else
                {
                    failed++;
                    output.WriteLine($"FAIL  {result.Location}  {result.Name}: {result.Reason}");
                }
            }
        }

        output.WriteLine($"rules test: {passed} passed, {failed} failed");
        return failed == 0 && passed > 0 ? BrokerCli.Ok : BrokerCli.Failed;
    }

    private int UsageError(string message)
    {
        errors.WriteLine(message);
        return BrokerCli.Usage;
    }

    private ResolvedSettings? Settings(string? configFile)
    {
        var problems = new List<string>();
        var settings = BrokerApp.ResolveSettings(configFile, problems);
        if (settings is null)
        {
            errors.WriteLine($"tokenbroker rules: the configuration has {problems.Count} problem(s):");
            foreach (var problem in problems)
            {
                errors.WriteLine($"  - {problem}");
            }
        }

        return settings;
    }

    private static List<RuleSource> Read(IReadOnlyList<string> paths, out List<RuleDiagnostic> readErrors)
    {
        var messages = new List<string>();
        var sources = RuleSource.FromPaths(paths, messages).ToList();
        readErrors = [.. messages.Select(m => new RuleDiagnostic(RuleErrors.FileUnreadable, RuleSeverity.Error, new SourceLocation("(rules)", 0, 0), m))];
        return sources;
    }

    /// <summary>The given paths; else the configured <c>TokenBroker:Rules:Paths</c>; else the built-in sample rules, as <c>serve</c> does.</summary>
    private static List<RuleSource> Sources(IReadOnlyList<string> paths, ResolvedSettings settings, out List<RuleDiagnostic> readErrors)
    {
        if (paths.Count > 0)
        {
            return Read(paths, out readErrors);
        }

        if (settings.RulePaths.Count > 0)
        {
            return Read(settings.RulePaths, out readErrors);
        }

        readErrors = [];
        return [.. RuleStore.EmbeddedSources()];
    }

    /// <summary>Rules as <c>serve</c> would load them (compiled and linted); null, with the errors printed, when they do not load.</summary>
    private Rules.Model.RuleSet? LoadForUse(IReadOnlyList<string> paths, ResolvedSettings settings)
    {
        var sources = Sources(paths, settings, out var readErrors);
        var result = RuleLinter.CompileAndLint(settings.ProviderDescriptors, settings.RuleLoad, sources);
        if (readErrors.Count == 0 && result.RuleSet is not null)
        {
            return result.RuleSet;
        }

        errors.WriteLine("tokenbroker rules: the rules do not load (run 'tokenbroker rules lint' for details):");
        foreach (var d in readErrors.Concat(result.Diagnostics).Where(d => d.Severity == RuleSeverity.Error))
        {
            errors.WriteLine($"  {d}");
        }

        return null;
    }

    private int Report(List<RuleDiagnostic> diagnostics, int files, int? rules, bool json, bool failOnWarnings)
    {
        var errorCount = diagnostics.Count(d => d.Severity == RuleSeverity.Error);
        var warningCount = diagnostics.Count - errorCount;
        if (json)
        {
            var buffer = new ArrayBufferWriter<byte>();
            using (var w = new Utf8JsonWriter(buffer, JsonOptions))
            {
                w.WriteStartObject();
                w.WriteStartArray("diagnostics");
                foreach (var d in diagnostics)
                {
                    w.WriteStartObject();
                    w.WriteString("id", d.Id);
                    w.WriteString("severity", d.Severity == RuleSeverity.Error ? "error" : "warning");
                    w.WriteString("file", d.Location.File);
                    w.WriteNumber("line", d.Location.Line);
                    w.WriteNumber("column", d.Location.Column);
                    w.WriteString("message", d.Message);
                    if (d.Fix is not null)
                    {
                        w.WriteString("fix", d.Fix);
                    }

                    if (d.Rule is not null)
                    {
                        w.WriteString("rule", d.Rule);
                    }

                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteStartObject("summary");
                w.WriteNumber("files", files);
                if (rules is { } n)
                {
                    w.WriteNumber("rules", n);
                }
                else
                {
                    w.WriteNull("rules");
                }

                w.WriteNumber("errors", errorCount);
                w.WriteNumber("warnings", warningCount);
                w.WriteEndObject();
                w.WriteEndObject();
            }

            output.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan));
        }
        else
        {
            foreach (var d in diagnostics)
            {
                output.WriteLine(d.ToString());
                if (d.Fix is not null)
                {
                    output.WriteLine($"    fix: {d.Fix}");
                }
            }

            var ruleText = rules is { } n ? $"{n} rule(s)" : "rules not compiled";
            output.WriteLine($"{files} file(s), {ruleText}: {errorCount} error(s), {warningCount} warning(s)");
        }

        return errorCount > 0 || (failOnWarnings && warningCount > 0) ? BrokerCli.Failed : BrokerCli.Ok;
    }

    /// <summary>Decodes a JWT's payload WITHOUT verifying anything: explain only shows what rules would do with these claims.</summary>
    internal static Dictionary<string, string>? DecodeUnverified(string token, out string? error)
    {
        var parts = token.Trim().Split('.');
        if (parts.Length != 3)
        {
            error = $"--token: expected a compact JWS with 3 dot-separated parts, found {parts.Length}";
            return null;
        }

        if (!Base64Url.TryDecodeStrict(parts[1], out var payload))
        {
            error = "--token: the payload (second part) is not base64url";
            return null;
        }

        try
        {
            using var document = JsonDocument.Parse(payload, new JsonDocumentOptions { AllowDuplicateProperties = false, MaxDepth = 16 });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                error = "--token: the payload is not a JSON object";
                return null;
            }

            error = null;
            return JobTokenClaims.Scalars(document.RootElement);
        }
        catch (JsonException e)
        {
            error = $"--token: the payload is not valid JSON: {e.Message}";
            return null;
        }
    }

    /// <summary>
    /// Checks the exchange makes before any rule, as far as the claims show them: explain does not verify the
    /// token, but it says when the broker would refuse it before the rules are even consulted.
    /// </summary>
    internal static IReadOnlyList<string> PreRuleNotes(ResolvedProvider provider, Dictionary<string, string> claims, DateTimeOffset now)
    {
        var notes = new List<string>();
        if (claims.TryGetValue("iss", out var iss) && iss != provider.Issuer)
        {
            notes.Add($"the token's iss {Explanation.Quote(iss)} is not provider '{provider.Name}''s issuer \"{provider.Issuer}\": the broker would refuse it before any rule (TB1107)");
        }

        if (claims.TryGetValue("aud", out var aud) && aud != provider.Audience)
        {
            notes.Add($"the token's aud {Explanation.Quote(aud)} is not \"{provider.Audience}\", the audience provider '{provider.Name}' requires: the broker would refuse it before any rule (TB1111)");
        }

        if (claims.TryGetValue("exp", out var expText) && long.TryParse(expText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var exp) && exp < now.ToUnixTimeSeconds())
        {
            notes.Add($"the token expired at {DateTimeOffset.FromUnixTimeSeconds(exp):yyyy-MM-ddTHH:mm:ssZ}: the broker would refuse it before any rule (TB1112)");
        }

        return notes;
    }

    /// <summary>The named provider, or the one whose issuer is the token's <c>iss</c>.</summary>
    private static ResolvedProvider? ChooseProvider(ResolvedSettings settings, string? name, Dictionary<string, string> claims, out string? error)
    {
        var names = string.Join(", ", settings.Providers.Select(p => p.Name));
        if (name is not null)
        {
            var named = settings.Providers.FirstOrDefault(p => p.Name == name);
            error = named is null ? $"--provider: '{name}' is not configured; configured: {names}" : null;
            return named;
        }

        if (!claims.TryGetValue("iss", out var issuer))
        {
            error = $"the claims have no 'iss' to pick the provider by; pass --provider ({names})";
            return null;
        }

        var matching = settings.Providers.Where(p => p.Issuer == issuer).ToList();
        error = matching.Count == 1 ? null : $"iss '{issuer}' matches {matching.Count} configured providers; pass --provider ({names})";
        return matching.Count == 1 ? matching[0] : null;
    }
}

/// <summary>Reads claim sets from JSON files: an object of claims, or a fixture file of named tokens (<c>file.json#name</c>).</summary>
internal static class ClaimFiles
{
    /// <summary>Reads <paramref name="reference"/> (<c>path</c> or <c>path#name</c>, relative to <paramref name="baseDirectory"/>).</summary>
    public static Dictionary<string, string>? Read(string reference, string baseDirectory, out string? error)
    {
        var hash = reference.LastIndexOf('#');
        var path = hash >= 0 ? reference[..hash] : reference;
        var name = hash >= 0 ? reference[(hash + 1)..] : null;
        var full = Path.Combine(baseDirectory, path);
        if (!File.Exists(full))
        {
            error = $"{path}: no such file";
            return null;
        }

        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(full), new JsonDocumentOptions { AllowDuplicateProperties = false, MaxDepth = 16 });
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                error = $"{path}: the file is not a JSON object";
                return null;
            }

            if (name is not null)
            {
                if (!root.TryGetProperty(name, out var token) || token.ValueKind != JsonValueKind.Object)
                {
                    error = $"{path}: no token named '{name}'; the file has: {string.Join(", ", root.EnumerateObject().Select(p => p.Name))}";
                    return null;
                }

                root = token;
            }
            else if (root.EnumerateObject().Any() && root.EnumerateObject().All(p => p.Value.ValueKind == JsonValueKind.Object))
            {
                error = $"{path}: the file holds several tokens ({string.Join(", ", root.EnumerateObject().Select(p => p.Name))}); name one as {path}#NAME";
                return null;
            }

            error = null;
            return JobTokenClaims.Scalars(root);
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            error = $"{path}: {e.Message}";
            return null;
        }
    }
}
