using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TokenBroker.Rules.Loading;

/// <summary>
/// The JSON Schema (draft 2020-12) of rules files, for editors (yaml-language-server) and CI. It describes the
/// shape the compiler accepts; the compiler stays the authority for what a schema cannot say (claim names per
/// provider, regex engine limits, duplicate ids, safety checks). Keys come from <see cref="RuleKeys"/>, so the
/// schema cannot allow or miss a key the compiler does not.
/// </summary>
public static class RuleSchema
{
    public const string Id = "urn:tokenbroker:rules:v1";

    /// <summary>The schema as indented JSON text, ending with a newline (the committed <c>config/rules.schema.json</c>).</summary>
    public static string Generate()
    {
        var options = new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        return Build().ToJsonString(options) + "\n";
    }

    public static JsonObject Build()
    {
        var scalar = new JsonObject
        {
            ["description"] = "A YAML scalar; rules read it as text, so 5001 and \"5001\" are the same.",
            ["type"] = new JsonArray("string", "number", "boolean"),
        };

        var condition = new JsonObject
        {
            ["description"] = "A plain value (exact, ordinal match) or a mapping with exactly one operator.",
            ["oneOf"] = new JsonArray(
                Ref("scalar"),
                new JsonObject
                {
                    ["type"] = "object",
                    ["minProperties"] = 1,
                    ["maxProperties"] = 1,
                    ["additionalProperties"] = false,
                    ["properties"] = Properties(RuleKeys.Operators, new()
                    {
                        ["in"] = new JsonObject { ["description"] = "The value equals one of these.", ["type"] = "array", ["minItems"] = 1, ["items"] = Ref("scalar") },
                        ["glob"] = Pattern("The whole value matches; '*' and '?' never match '/'; '**' is refused."),
                        ["regex"] = Pattern("The whole value matches (anchored, linear-time engine, no lookarounds or backreferences)."),
                        ["not"] = Describe(Ref("condition"), "The inner condition does not hold (a missing claim still never matches)."),
                    }),
                }),
        };

        var claimValue = new JsonObject
        {
            ["description"] = "A template string, or a list or mapping of them (at most 4 levels).",
            ["oneOf"] = new JsonArray(
                Ref("scalar"),
                new JsonObject { ["type"] = "array", ["items"] = Ref("claimValue") },
                new JsonObject { ["type"] = "object", ["additionalProperties"] = Ref("claimValue") }),
        };

        var grant = new JsonObject
        {
            ["description"] = "What a matching rule grants.",
            ["type"] = "object",
            ["additionalProperties"] = false,
            ["required"] = Strings(RuleKeys.GrantRequired),
            ["properties"] = Properties(RuleKeys.Grant, new()
            {
                ["audiences"] = new JsonObject
                {
                    ["description"] = "Audiences the issued token may carry; a request names the ones it needs.",
                    ["type"] = "array",
                    ["minItems"] = 1,
                    ["uniqueItems"] = true,
                    ["items"] = new JsonObject { ["type"] = "string", ["minLength"] = 1, ["maxLength"] = 512, ["pattern"] = "^\\S+$" },
                },
                ["scopes"] = new JsonObject
                {
                    ["description"] = "OAuth scopes (RFC 6749 section 3.3 characters).",
                    ["type"] = "array",
                    ["items"] = new JsonObject { ["type"] = "string", ["pattern"] = "^[\\x21\\x23-\\x5B\\x5D-\\x7E]{1,256}$" },
                },
                ["stage"] = new JsonObject
                {
                    ["description"] = "The issued token's stage claim; only 'read' serves pull requests without allow_pull_requests.",
                    ["type"] = "string",
                    ["pattern"] = "^[a-z][a-z0-9_-]{0,31}$",
                },
                ["ttl"] = new JsonObject
                {
                    ["description"] = "Upper bound of the token lifetime, e.g. 90s, 10m, 1h30m; at most TokenBroker:Rules:MaxTtl.",
                    ["type"] = "string",
                    ["pattern"] = "^(?=.)([0-9]{1,7}h)?([0-9]{1,7}m)?([0-9]{1,7}s)?$",
                },
                ["subject"] = new JsonObject
                {
                    ["description"] = "Template for the issued token's sub, e.g. \"github:{repository}:{environment}\".",
                    ["type"] = "string",
                    ["minLength"] = 1,
                },
                ["claims"] = new JsonObject
                {
                    ["description"] = "Extra claims; reserved names (iss, sub, aud, stage, rule, ...) are refused by the compiler.",
                    ["type"] = "object",
                    ["additionalProperties"] = Ref("claimValue"),
                },
                ["downscope_audiences"] = new JsonObject
                {
                    ["description"] = "Audiences (each one of 'audiences') for which a token this rule issued may be exchanged for a narrower one.",
                    ["type"] = "array",
                    ["uniqueItems"] = true,
                    ["items"] = new JsonObject { ["type"] = "string", ["minLength"] = 1 },
                },
            }),
        };

        var rule = new JsonObject
        {
            ["description"] = "One trust rule. The first rule, in declared order, whose conditions hold and which grants the requested audiences decides.",
            ["type"] = "object",
            ["additionalProperties"] = false,
            ["required"] = Strings(RuleKeys.RuleRequired),
            ["properties"] = Properties(RuleKeys.Rule, new()
            {
                ["id"] = new JsonObject { ["description"] = "Unique across all files; the issued token's rule claim.", ["type"] = "string", ["pattern"] = "^[a-z0-9][a-z0-9._-]{0,63}$" },
                ["description"] = new JsonObject { ["description"] = "Free text for reviewers.", ["type"] = "string" },
                ["provider"] = new JsonObject { ["description"] = "A configured provider name, e.g. github or gitlab.", ["type"] = "string", ["minLength"] = 1 },
                ["when"] = new JsonObject
                {
                    ["description"] = "Claim name (provider-neutral, raw, or raw.NAME) to condition; all must hold.",
                    ["type"] = "object",
                    ["minProperties"] = 1,
                    ["additionalProperties"] = Ref("condition"),
                },
                ["grant"] = Ref("grant"),
                ["allow_pull_requests"] = new JsonObject { ["description"] = "Lets pull/merge request tokens reach a stage other than read. Default false.", ["type"] = "boolean" },
            }),
        };

        return new JsonObject
        {
            ["$schema"] = "https://json-schema.org/draft/2020-12/schema",
            ["$id"] = Id,
            ["title"] = "TokenBroker trust rules",
            ["description"] = "A TokenBroker rules file. Generated by 'tokenbroker rules schema'; see docs/rules.md.",
            ["type"] = "object",
            ["additionalProperties"] = false,
            ["required"] = Strings(RuleKeys.FileRequired),
            ["properties"] = Properties(RuleKeys.File, new()
            {
                ["version"] = new JsonObject { ["description"] = "Optional; must be 1.", ["enum"] = new JsonArray(1, "1") },
                ["rules"] = new JsonObject { ["description"] = "The rules, in evaluation order.", ["type"] = "array", ["items"] = Ref("rule") },
            }),
            ["$defs"] = new JsonObject
            {
                ["rule"] = rule,
                ["grant"] = grant,
                ["condition"] = condition,
                ["claimValue"] = claimValue,
                ["scalar"] = scalar,
            },
        };
    }

    /// <summary>The properties of <paramref name="keys"/>, in that order; a key without a schema is a programming error.</summary>
    private static JsonObject Properties(string[] keys, Dictionary<string, JsonNode> schemas)
    {
        var result = new JsonObject();
        foreach (var key in keys)
        {
            result[key] = schemas.Remove(key, out var schema) ? schema : throw new InvalidOperationException($"no schema for rule key '{key}'");
        }

        return schemas.Count == 0 ? result : throw new InvalidOperationException($"schema for unknown key(s) {string.Join(", ", schemas.Keys)}");
    }

    private static JsonObject Ref(string name) => new() { ["$ref"] = "#/$defs/" + name };

    private static JsonObject Describe(JsonObject node, string description)
    {
        node["description"] = description;
        return node;
    }

    private static JsonObject Pattern(string description) =>
        new() { ["description"] = description, ["type"] = "string", ["minLength"] = 1, ["maxLength"] = 1024 };

    private static JsonArray Strings(string[] values) => new([.. values.Select(v => (JsonNode)JsonValue.Create(v))]);
}
