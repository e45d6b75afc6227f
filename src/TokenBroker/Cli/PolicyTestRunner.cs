using System.Globalization;
using System.Text.Json;
using TokenBroker.Configuration;
using TokenBroker.Errors;
using TokenBroker.Exchange;
using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Rules.Model;
using TokenBroker.Rules.Providers;
using TokenBroker.Signing;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace TokenBroker.Cli;

/// <summary>The result of one policy test case (or of a test file that could not be read).</summary>
internal sealed record PolicyTestResult(string Location, string Name, bool Passed, string? Reason);

/// <summary>
/// Runs policy tests: YAML files whose cases give a provider, claims (inline, from a fixture, or both: inline
/// claims override the fixture's and <c>~</c> removes one) and a request, and expect either <c>allow</c> by a
/// rule with certain issued claims, or <c>deny</c> with an OAuth error code and/or TB id. The schema is strict:
/// unknown keys, wrong types and missing keys are errors with file:line:column, and a file with errors counts as
/// one failed case.
/// </summary>
internal sealed class PolicyTestRunner(ResolvedSettings settings, RuleSet rules, TimeProvider time)
{
    private static readonly string[] FileKeys = ["version", "tests"];
    private static readonly string[] CaseKeys = ["name", "provider", "fixture", "claims", "request", "expect"];
    private static readonly string[] RequestKeys = ["audiences", "scopes"];
    private static readonly string[] ExpectKeys = ["allow", "deny"];
    private static readonly string[] AllowKeys = ["rule", "claims"];
    private static readonly string[] DenyKeys = ["error", "error_id"];

    public IReadOnlyList<PolicyTestResult> RunFile(string file)
    {
        var problems = new List<string>();
        var cases = Parse(file, problems);
        if (problems.Count > 0)
        {
            return [new PolicyTestResult(file, "(test file)", false, $"the file is malformed; nothing in it ran:{Environment.NewLine}      {string.Join(Environment.NewLine + "      ", problems)}")];
        }

        return [.. cases.Select(Run)];
    }

    private sealed record TestCase(string Location, string Name, ResolvedProvider Provider, Dictionary<string, string> Claims, PolicyRequest Request, string? AllowRule, YamlMappingNode? AllowClaims, string? DenyError, string? DenyErrorId);

    private PolicyTestResult Run(TestCase c)
    {
        var decision = PolicyEvaluator.Evaluate(rules, c.Provider.Descriptor, new DictionaryJobClaims(c.Claims), c.Request, trace: true);
        if (c.AllowRule is not null)
        {
            if (!decision.IsGranted)
            {
                var error = BrokerErrors.ForPolicy(decision.Outcome);
                return Fail(c, $"expected allow by rule '{c.AllowRule}', got deny {error.Code} {error.Id}: {decision.Detail}. {TraceSummary.Summarize(decision.Trace ?? [])}");
            }

            if (decision.Rule!.Id != c.AllowRule)
            {
                return Fail(c, $"expected allow by rule '{c.AllowRule}', got allow by rule '{decision.Rule.Id}'");
            }

            if (c.AllowClaims is not null)
            {
                var mint = IssuedClaims.Build(settings.Issuer, c.Provider.Descriptor, new DictionaryJobClaims(c.Claims), decision, time.GetUtcNow(), null, Rules.Explanation.JtiPlaceholder, null);
                using var issued = JsonDocument.Parse(TokenMinter.PayloadJson(mint));
                foreach (var (keyNode, expected) in c.AllowClaims.Children)
                {
                    var name = ((YamlScalarNode)keyNode).Value!;
                    var present = issued.RootElement.TryGetProperty(name, out var actual);
                    if (IsNull(expected))
                    {
                        if (present)
                        {
                            return Fail(c, $"issued claim '{name}' is {actual.GetRawText()}; expected it to be absent");
                        }

                        continue;
                    }

                    if (!present)
                    {
                        return Fail(c, $"the issued token has no claim '{name}'");
                    }

                    if (!Same(expected, actual))
                    {
                        return Fail(c, $"issued claim '{name}' is {actual.GetRawText()}; expected {Render(expected)}");
                    }
                }
            }

            return new PolicyTestResult(c.Location, c.Name, true, null);
        }

        if (decision.IsGranted)
        {
            return Fail(c, $"expected deny{(c.DenyErrorId is null ? "" : " " + c.DenyErrorId)}, got allow by rule '{decision.Rule!.Id}'");
        }

        var refusal = BrokerErrors.ForPolicy(decision.Outcome);
        if ((c.DenyError is not null && c.DenyError != refusal.Code) || (c.DenyErrorId is not null && c.DenyErrorId != refusal.Id))
        {
            return Fail(c, $"expected deny {c.DenyError ?? "*"} {c.DenyErrorId ?? "*"}, got deny {refusal.Code} {refusal.Id}: {decision.Detail}");
        }

        return new PolicyTestResult(c.Location, c.Name, true, null);
    }

    private static PolicyTestResult Fail(TestCase c, string reason) => new(c.Location, c.Name, false, reason);

    /// <summary>Compares an expected YAML value with an issued JSON value: scalars by text, lists in order, mappings exactly.</summary>
    private static bool Same(YamlNode expected, JsonElement actual) => (expected, actual.ValueKind) switch
    {
        (YamlScalarNode s, JsonValueKind.String) => s.Value == actual.GetString(),
        (YamlScalarNode s, JsonValueKind.Number) => s.Value == actual.GetRawText(),
        (YamlScalarNode s, JsonValueKind.True or JsonValueKind.False) => s.Value == actual.GetRawText(),
        (YamlSequenceNode seq, JsonValueKind.Array) => seq.Children.Count == actual.GetArrayLength() &&
            seq.Children.Zip(actual.EnumerateArray()).All(p => Same(p.First, p.Second)),
        (YamlMappingNode map, JsonValueKind.Object) => map.Children.Count == actual.EnumerateObject().Count() &&
            map.Children.All(kv => kv.Key is YamlScalarNode { Value: { } k } && actual.TryGetProperty(k, out var v) && Same(kv.Value, v)),
        _ => false,
    };

    private static string Render(YamlNode node) => node switch
    {
        YamlScalarNode s => JsonSerializer.Serialize(s.Value),
        YamlSequenceNode seq => "[" + string.Join(", ", seq.Children.Select(Render)) + "]",
        YamlMappingNode map => "{" + string.Join(", ", map.Children.Select(kv => $"{Render(kv.Key)}: {Render(kv.Value)}")) + "}",
        _ => "?",
    };

    private static bool IsNull(YamlNode node) =>
        node is YamlScalarNode { Style: ScalarStyle.Plain, Value: "" or "~" or "null" or "Null" or "NULL" };

    private List<TestCase> Parse(string file, List<string> problems)
    {
        var cases = new List<TestCase>();
        string text;
        try
        {
            text = File.ReadAllText(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problems.Add($"{file}: error {RuleErrors.FileUnreadable}: {e.Message}");
            return cases;
        }

        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            problems.Add($"{file}:{e.Start.Line}:{e.Start.Column}: error {RuleErrors.YamlSyntax}: {e.Message}");
            return cases;
        }

        if (stream.Documents.Count != 1 || stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            problems.Add($"{file}:1:1: error {RuleErrors.WrongType}: a test file is one YAML mapping with a 'tests' list");
            return cases;
        }

        var reader = new Reader(file, problems);
        var top = reader.Fields(root, "top level", FileKeys, ["tests"]);
        if (top.TryGetValue("version", out var version) && version is not YamlScalarNode { Value: "1" })
        {
            reader.Error(RuleErrors.WrongType, version, "'version' must be 1");
        }

        if (!top.TryGetValue("tests", out var testsNode))
        {
            return cases;
        }

        if (testsNode is not YamlSequenceNode tests || tests.Children.Count == 0)
        {
            reader.Error(RuleErrors.WrongType, testsNode, "'tests' must be a non-empty list of test cases");
            return cases;
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in tests)
        {
            if (ParseCase(node, reader, Path.GetDirectoryName(Path.GetFullPath(file))!) is { } c)
            {
                if (!names.Add(c.Name))
                {
                    reader.Error(RuleErrors.DuplicateRuleId, node, $"test name '{c.Name}' is used twice in this file");
                }

                cases.Add(c);
            }
        }

        return cases;
    }

    private TestCase? ParseCase(YamlNode node, Reader reader, string directory)
    {
        if (node is not YamlMappingNode map)
        {
            reader.Error(RuleErrors.WrongType, node, "each test case must be a mapping");
            return null;
        }

        var before = reader.Count;
        var f = reader.Fields(map, "a test case", CaseKeys, ["name", "provider", "request", "expect"]);
        var name = f.TryGetValue("name", out var nameNode) ? reader.Text(nameNode, "'name'") : null;

        ResolvedProvider? provider = null;
        if (f.TryGetValue("provider", out var providerNode) && reader.Text(providerNode, "'provider'") is { } providerName)
        {
            provider = settings.Providers.FirstOrDefault(p => p.Name == providerName);
            if (provider is null)
            {
                reader.Error(RuleErrors.UnknownProvider, providerNode, $"provider '{providerName}' is not configured; configured: {string.Join(", ", settings.Providers.Select(p => p.Name))}");
            }
        }

        var claims = new Dictionary<string, string>(StringComparer.Ordinal);
        if (f.TryGetValue("fixture", out var fixtureNode) && reader.Text(fixtureNode, "'fixture'") is { } fixture)
        {
            if (!fixture.Contains('#', StringComparison.Ordinal))
            {
                reader.Error(RuleErrors.WrongType, fixtureNode, $"'fixture' must be FILE#NAME (a token of a fixture file, relative to this file), not '{fixture}'");
            }
            else if (ClaimFiles.Read(fixture, directory, out var error) is { } loaded)
            {
                claims = loaded;
            }
            else
            {
                reader.Error(RuleErrors.FileUnreadable, fixtureNode, $"'fixture': {error}");
            }
        }

        if (f.TryGetValue("claims", out var claimsNode))
        {
            if (claimsNode is not YamlMappingNode claimMap)
            {
                reader.Error(RuleErrors.WrongType, claimsNode, "'claims' must be a mapping of claim name to value (~ removes a fixture claim)");
            }
            else
            {
                foreach (var (k, v) in claimMap.Children)
                {
                    var key = reader.Text(k, "a claim name");
                    if (key is null)
                    {
                        continue;
                    }

                    if (IsNull(v))
                    {
                        claims.Remove(key);
                    }
                    else if (reader.Text(v, $"claim '{key}'") is { } value)
                    {
                        claims[key] = value;
                    }
                }
            }
        }

        if (!f.ContainsKey("fixture") && !f.ContainsKey("claims"))
        {
            reader.Error(RuleErrors.MissingKey, map, "a test case needs 'fixture', 'claims' or both");
        }

        IReadOnlyList<string> audiences = [];
        IReadOnlyList<string>? scopes = null;
        if (f.TryGetValue("request", out var requestNode))
        {
            if (requestNode is not YamlMappingNode requestMap)
            {
                reader.Error(RuleErrors.WrongType, requestNode, "'request' must be a mapping with 'audiences' and/or 'scopes'");
            }
            else
            {
                var r = reader.Fields(requestMap, "'request'", RequestKeys, []);
                if (r.TryGetValue("audiences", out var a))
                {
                    audiences = reader.TextList(a, "'audiences'") ?? [];
                }

                if (r.TryGetValue("scopes", out var s))
                {
                    scopes = reader.TextList(s, "'scopes'");
                }
            }
        }

        string? allowRule = null, denyError = null, denyId = null;
        YamlMappingNode? allowClaims = null;
        if (f.TryGetValue("expect", out var expectNode))
        {
            if (expectNode is not YamlMappingNode expectMap || expectMap.Children.Count != 1)
            {
                reader.Error(RuleErrors.WrongType, expectNode, "'expect' must be a mapping with exactly one of 'allow' or 'deny'");
            }
            else
            {
                var e = reader.Fields(expectMap, "'expect'", ExpectKeys, []);
                if (e.TryGetValue("allow", out var allowNode))
                {
                    if (allowNode is not YamlMappingNode allowMap)
                    {
                        reader.Error(RuleErrors.WrongType, allowNode, "'allow' must be a mapping with 'rule' and optionally 'claims'");
                    }
                    else
                    {
                        var a = reader.Fields(allowMap, "'allow'", AllowKeys, ["rule"]);
                        allowRule = a.TryGetValue("rule", out var ruleNode) ? reader.Text(ruleNode, "'rule'") : null;
                        if (allowRule is not null && !rules.Rules.Any(x => x.Id == allowRule))
                        {
                            reader.Error(RuleErrors.WrongType, ruleNode!, $"'rule': no rule has id '{allowRule}'");
                        }

                        if (a.TryGetValue("claims", out var expectedClaims))
                        {
                            allowClaims = expectedClaims as YamlMappingNode;
                            if (allowClaims is null)
                            {
                                reader.Error(RuleErrors.WrongType, expectedClaims, "'claims' must be a mapping of issued claim name to expected value (~ expects it absent)");
                            }
                        }
                    }
                }
                else if (e.TryGetValue("deny", out var denyNode))
                {
                    if (denyNode is not YamlMappingNode denyMap)
                    {
                        reader.Error(RuleErrors.WrongType, denyNode, "'deny' must be a mapping with 'error' and/or 'error_id'");
                    }
                    else
                    {
                        var d = reader.Fields(denyMap, "'deny'", DenyKeys, []);
                        denyError = d.TryGetValue("error", out var en) ? reader.Text(en, "'error'") : null;
                        denyId = d.TryGetValue("error_id", out var idn) ? reader.Text(idn, "'error_id'") : null;
                        if (denyError is null && denyId is null)
                        {
                            reader.Error(RuleErrors.MissingKey, denyNode, "'deny' needs 'error' (e.g. invalid_target), 'error_id' (e.g. TB1202) or both");
                        }
                        else if (denyId is not null && !BrokerErrors.All.Any(x => x.Id == denyId))
                        {
                            reader.Error(RuleErrors.WrongType, d["error_id"], $"'error_id': '{denyId}' is not a broker error id (see docs/errors.md)");
                        }
                    }
                }
            }
        }

        if (reader.Count > before || name is null || provider is null || (allowRule is null && denyError is null && denyId is null))
        {
            return null;
        }

        return new TestCase(reader.At(map), name, provider, claims, new PolicyRequest(provider.Name, audiences, scopes), allowRule, allowClaims, denyError, denyId);
    }

    /// <summary>Strict reading helpers with file:line:column errors, in the rule compiler's style and ids.</summary>
    private sealed class Reader(string file, List<string> problems)
    {
        public int Count => problems.Count;

        public string At(YamlNode node) => string.Create(CultureInfo.InvariantCulture, $"{file}:{node.Start.Line}:{node.Start.Column}");

        public void Error(string id, YamlNode node, string message) => problems.Add($"{At(node)}: error {id}: {message}");

        public Dictionary<string, YamlNode> Fields(YamlMappingNode map, string what, string[] allowed, string[] required) =>
            TokenBroker.Rules.Loading.YamlFields.Read(map, what, allowed, required, Error);

        public string? Text(YamlNode node, string what)
        {
            if (node is YamlScalarNode { Value: { } value } && !IsNull(node))
            {
                return value;
            }

            Error(RuleErrors.WrongType, node, $"{what} must be a string");
            return null;
        }

        public List<string>? TextList(YamlNode node, string what)
        {
            if (node is not YamlSequenceNode seq)
            {
                Error(RuleErrors.WrongType, node, $"{what} must be a list of strings");
                return null;
            }

            var values = new List<string>();
            foreach (var item in seq)
            {
                if (Text(item, $"each entry of {what}") is { } text)
                {
                    values.Add(text);
                }
            }

            return values;
        }
    }
}
