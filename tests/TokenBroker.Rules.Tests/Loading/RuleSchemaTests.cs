using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Tests.Support;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace TokenBroker.Rules.Tests.Loading;

/// <summary>
/// The committed JSON Schema (config/rules.schema.json) is what the generator emits, and it agrees with the
/// compiler on real files. The check uses a small structural validator for exactly the keywords the schema uses.
/// </summary>
[TestFixture]
public sealed class RuleSchemaTests
{
    private static string RepoRoot
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

    private static JsonObject Schema => JsonNode.Parse(RuleSchema.Generate())!.AsObject();

    [Test]
    public void CommittedSchema_IsTheGeneratedOne()
    {
        var committed = File.ReadAllText(Path.Combine(RepoRoot, "config", "rules.schema.json"));

        Assert.That(committed, Is.EqualTo(RuleSchema.Generate()), "regenerate it: dotnet src/TokenBroker/bin/Release/net10.0/tokenbroker.dll rules schema > config/rules.schema.json");
    }

    [Test]
    public void SampleRuleFiles_PointEditorsAtTheSchema()
    {
        foreach (var file in Directory.EnumerateFiles(Path.Combine(RepoRoot, "config", "rules"), "*.yaml"))
        {
            Assert.That(File.ReadLines(file).First(), Is.EqualTo("# yaml-language-server: $schema=../rules.schema.json"), file);
        }
    }

    [Test]
    public void Schema_AcceptsTheSampleRules()
    {
        foreach (var source in RuleFiles.SampleSources())
        {
            var errors = Validate(Schema, YamlToJson(source.Text));

            Assert.That(errors, Is.Empty, source.Name);
        }
    }

    private static IEnumerable<TestCaseData> Rejected()
    {
        static TestCaseData Case(string name, string yaml, string path) => new TestCaseData(yaml, path).SetArgDisplayNames(name);

        const string Rule = "rules:\n  - id: r1\n    provider: github\n    when: { owner_id: \"1\" }\n    grant: { audiences: [a], stage: deploy, subject: s";
        yield return Case("unknown top-level key", "rules: []\nextra: 1\n", "$.extra");
        yield return Case("unknown rule key", "rules:\n  - id: r1\n    provider: github\n    when: { a: b }\n    grant: { audiences: [a], stage: deploy, subject: s }\n    extra: 1\n", "$.rules[0].extra");
        yield return Case("unknown grant key", Rule + ", extra: 1 }\n", "$.rules[0].grant.extra");
        yield return Case("unknown operator", "rules:\n  - id: r1\n    provider: github\n    when: { ref: { prefix: main } }\n    grant: { audiences: [a], stage: deploy, subject: s }\n", "$.rules[0].when.ref");
        yield return Case("two operators", "rules:\n  - id: r1\n    provider: github\n    when: { ref: { glob: a, regex: b } }\n    grant: { audiences: [a], stage: deploy, subject: s }\n", "$.rules[0].when.ref");
        yield return Case("missing grant", "rules:\n  - id: r1\n    provider: github\n    when: { a: b }\n", "$.rules[0]");
        yield return Case("bad rule id", "rules:\n  - id: R1\n    provider: github\n    when: { a: b }\n    grant: { audiences: [a], stage: deploy, subject: s }\n", "$.rules[0].id");
        yield return Case("bad ttl", Rule + ", ttl: 10 minutes }\n", "$.rules[0].grant.ttl");
        yield return Case("empty audiences", "rules:\n  - id: r1\n    provider: github\n    when: { a: b }\n    grant: { audiences: [], stage: deploy, subject: s }\n", "$.rules[0].grant.audiences");
        yield return Case("allow_pull_requests as text", "rules:\n  - id: r1\n    provider: github\n    when: { a: b }\n    grant: { audiences: [a], stage: deploy, subject: s }\n    allow_pull_requests: 'yes'\n", "$.rules[0].allow_pull_requests");
        yield return Case("version 2", "version: 2\nrules: []\n", "$.version");
    }

    [TestCaseSource(nameof(Rejected))]
    public void Schema_RejectsWhatTheCompilerRejects(string yaml, string path)
    {
        var errors = Validate(Schema, YamlToJson(yaml));

        Assert.That(errors, Has.Some.StartsWith(path + ":"), string.Join("\n", errors));
        Assert.That(RuleFiles.Compile(yaml).HasErrors, Is.True, "the compiler rejects it too");
    }

    [Test]
    public void Schema_CoversEveryKeyTheCompilerAllows()
    {
        var schema = Schema;
        var defs = schema["$defs"]!;

        Assert.That(schema["properties"]!.AsObject().Select(p => p.Key), Is.EquivalentTo(RuleKeys.File));
        Assert.That(defs["rule"]!["properties"]!.AsObject().Select(p => p.Key), Is.EquivalentTo(RuleKeys.Rule));
        Assert.That(defs["grant"]!["properties"]!.AsObject().Select(p => p.Key), Is.EquivalentTo(RuleKeys.Grant));
        Assert.That(schema["$schema"]!.GetValue<string>(), Is.EqualTo("https://json-schema.org/draft/2020-12/schema"));
    }

    /// <summary>YAML to JSON the way yaml-language-server sees it: plain true/false are booleans, plain integers numbers.</summary>
    private static JsonNode? YamlToJson(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return Convert(stream.Documents[0].RootNode);
    }

    private static JsonNode? Convert(YamlNode node) => node switch
    {
        YamlMappingNode m => new JsonObject(m.Children.Select(kv => KeyValuePair.Create(((YamlScalarNode)kv.Key).Value!, Convert(kv.Value)))),
        YamlSequenceNode s => new JsonArray([.. s.Children.Select(Convert)]),
        YamlScalarNode { Style: ScalarStyle.Plain, Value: "true" or "false" } b => JsonValue.Create(b.Value == "true"),
        YamlScalarNode { Style: ScalarStyle.Plain } n when long.TryParse(n.Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var i) => JsonValue.Create(i),
        YamlScalarNode s => JsonValue.Create(s.Value),
        _ => throw new InvalidOperationException("unexpected YAML node"),
    };

    /// <summary>
    /// A structural validator for the keywords the schema uses ($ref, type, enum, properties, required,
    /// additionalProperties, min/maxProperties, items, minItems, uniqueItems, min/maxLength, pattern, oneOf).
    /// An unknown keyword fails the test, so the schema cannot grow past what is checked here.
    /// </summary>
    private static List<string> Validate(JsonObject root, JsonNode? instance)
    {
        var errors = new List<string>();
        Check(root, root, instance, "$", errors);
        return errors;
    }

    private static readonly HashSet<string> Known =
    [
        "$schema", "$id", "$defs", "$ref", "title", "description", "type", "enum", "properties", "required", "additionalProperties",
        "minProperties", "maxProperties", "items", "minItems", "uniqueItems", "minLength", "maxLength", "pattern", "oneOf",
    ];

    private static void Check(JsonObject root, JsonNode schemaNode, JsonNode? value, string path, List<string> errors)
    {
        var schema = schemaNode.AsObject();
        foreach (var (keyword, _) in schema)
        {
            Assert.That(Known, Does.Contain(keyword), $"the test validator does not know '{keyword}'");
        }

        if (schema["$ref"] is { } reference)
        {
            var name = reference.GetValue<string>()["#/$defs/".Length..];
            Check(root, root["$defs"]![name]!, value, path, errors);
        }

        var kind = value switch
        {
            JsonObject => "object",
            JsonArray => "array",
            JsonValue v when v.GetValueKind() == JsonValueKind.String => "string",
            JsonValue v when v.GetValueKind() == JsonValueKind.Number => "number",
            JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => "boolean",
            _ => "null",
        };

        if (schema["type"] is { } type)
        {
            var allowed = type is JsonArray a ? a.Select(t => t!.GetValue<string>()).ToList() : [type.GetValue<string>()];
            if (!allowed.Contains(kind))
            {
                errors.Add($"{path}: expected {string.Join(" or ", allowed)}, found {kind}");
                return;
            }
        }

        if (schema["enum"] is JsonArray values && !values.Any(v => JsonNode.DeepEquals(v, value)))
        {
            errors.Add($"{path}: not one of {values.ToJsonString()}");
        }

        if (schema["oneOf"] is JsonArray branches)
        {
            var passing = branches.Count(b => { var e = new List<string>(); Check(root, b!, value, path, e); return e.Count == 0; });
            if (passing != 1)
            {
                errors.Add($"{path}: matches {passing} of the oneOf alternatives, not exactly one");
            }
        }

        switch (value)
        {
            case JsonObject obj:
                var properties = schema["properties"]?.AsObject();
                foreach (var required in schema["required"]?.AsArray() ?? [])
                {
                    if (!obj.ContainsKey(required!.GetValue<string>()))
                    {
                        errors.Add($"{path}: missing '{required}'");
                    }
                }

                if (schema["minProperties"] is { } min && obj.Count < min.GetValue<int>())
                {
                    errors.Add($"{path}: fewer than {min} properties");
                }

                if (schema["maxProperties"] is { } max && obj.Count > max.GetValue<int>())
                {
                    errors.Add($"{path}: more than {max} properties");
                }

                foreach (var (key, child) in obj)
                {
                    if (properties?[key] is { } propertySchema)
                    {
                        Check(root, propertySchema, child, $"{path}.{key}", errors);
                    }
                    else if (schema["additionalProperties"] is { } additional)
                    {
                        if (additional is JsonValue v && v.GetValueKind() == JsonValueKind.False)
                        {
                            errors.Add($"{path}.{key}: property not allowed");
                        }
                        else if (additional is JsonObject)
                        {
                            Check(root, additional, child, $"{path}.{key}", errors);
                        }
                    }
                }

                break;
            case JsonArray array:
                if (schema["minItems"] is { } minItems && array.Count < minItems.GetValue<int>())
                {
                    errors.Add($"{path}: fewer than {minItems} items");
                }

                if (schema["uniqueItems"] is { } unique && unique.GetValue<bool>() && array.Select(i => i?.ToJsonString()).Distinct().Count() != array.Count)
                {
                    errors.Add($"{path}: items are not unique");
                }

                if (schema["items"] is { } items)
                {
                    for (var i = 0; i < array.Count; i++)
                    {
                        Check(root, items, array[i], $"{path}[{i}]", errors);
                    }
                }

                break;
            case JsonValue text when kind == "string":
                var s = text.GetValue<string>();
                if (schema["minLength"] is { } minLength && s.Length < minLength.GetValue<int>())
                {
                    errors.Add($"{path}: shorter than {minLength}");
                }

                if (schema["maxLength"] is { } maxLength && s.Length > maxLength.GetValue<int>())
                {
                    errors.Add($"{path}: longer than {maxLength}");
                }

                if (schema["pattern"] is { } pattern && !Regex.IsMatch(s, pattern.GetValue<string>(), RegexOptions.ECMAScript))
                {
                    errors.Add($"{path}: does not match {pattern}");
                }

                break;
        }
    }
}
