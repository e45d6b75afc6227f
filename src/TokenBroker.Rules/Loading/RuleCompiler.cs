using System.Globalization;
using System.Text.RegularExpressions;
using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Model;
using TokenBroker.Rules.Providers;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace TokenBroker.Rules.Loading;

/// <summary>
/// Compiles rule files (strict YAML) into an immutable <see cref="RuleSet"/>. Every problem in every file is
/// reported at once with file:line:column and a stable id; a load with any error yields no rule set.
/// </summary>
public sealed partial class RuleCompiler(IReadOnlyDictionary<string, ProviderDescriptor> providers, RuleLoadOptions options)
{
    private static readonly HashSet<string> ReservedClaims = new(StringComparer.Ordinal)
    {
        "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "typ", "cnf", "act", "may_act", "azp",
        "auth_time", "acr", "amr", "nonce", "repo", "repo_id", "ref", "branch", "environment", "stage", "provider", "rule",
        "run_id",
    };

    private readonly IReadOnlyDictionary<string, ProviderDescriptor> _providers = providers;
    private readonly RuleLoadOptions _options = options;

    private const int MaxPatternLength = 1024;
    private const int MaxYamlDepth = 32;
    private const int MaxClaimDepth = 4;

    /// <summary>Compiles the sources. The result has a rule set only when no error was found.</summary>
    public RuleLoadResult Compile(IEnumerable<RuleSource> sources)
    {
        var diagnostics = new List<RuleDiagnostic>();
        var rules = new List<TrustRule>();
        var seenIds = new Dictionary<string, SourceLocation>(StringComparer.Ordinal);
        var any = false;
        foreach (var source in sources)
        {
            any = true;
            new FileCompiler(this, source, diagnostics, rules, seenIds).Run();
        }

        if (!any)
        {
            diagnostics.Add(new RuleDiagnostic(RuleErrors.NoRules, RuleSeverity.Error, new SourceLocation("(rules)", 0, 0), "no rules file was given"));
        }

        if (rules.Count > _options.MaxRules)
        {
            diagnostics.Add(new RuleDiagnostic(RuleErrors.TooLarge, RuleSeverity.Error, new SourceLocation("(rules)", 0, 0), $"{rules.Count} rules exceed the limit of {_options.MaxRules}"));
        }

        var hasErrors = diagnostics.Any(d => d.Severity == RuleSeverity.Error);
        return new RuleLoadResult(hasErrors ? null : new RuleSet(rules), diagnostics);
    }

    private sealed class FileCompiler(RuleCompiler owner, RuleSource source, List<RuleDiagnostic> diagnostics, List<TrustRule> rules, Dictionary<string, SourceLocation> seenIds)
    {
        private SourceLocation At(YamlNode node) => new(source.Name, (int)node.Start.Line, (int)node.Start.Column);

        private void Error(string id, YamlNode node, string message, string? fix = null) =>
            diagnostics.Add(new RuleDiagnostic(id, RuleSeverity.Error, At(node), message) { Fix = fix });

        private void Error(string id, Mark mark, string message) =>
            diagnostics.Add(new RuleDiagnostic(id, RuleSeverity.Error, new SourceLocation(source.Name, (int)mark.Line, (int)mark.Column), message));

        public void Run()
        {
            if (source.Text.Length > RuleSource.MaxLength)
            {
                diagnostics.Add(new RuleDiagnostic(RuleErrors.TooLarge, RuleSeverity.Error, new SourceLocation(source.Name, 0, 0), $"file is larger than {RuleSource.MaxLength} characters"));
                return;
            }

            if (!CheckDepth())
            {
                return;
            }

            var stream = new YamlStream();
            try
            {
                stream.Load(new StringReader(source.Text));
            }
            catch (YamlException e)
            {
                var duplicate = e.Message.Contains("Duplicate key", StringComparison.OrdinalIgnoreCase) || e.InnerException is ArgumentException;
                Error(duplicate ? RuleErrors.DuplicateKey : RuleErrors.YamlSyntax, e.Start, duplicate ? "duplicate key in mapping" : Clean(e.Message));
                return;
            }

            if (stream.Documents.Count != 1)
            {
                diagnostics.Add(new RuleDiagnostic(RuleErrors.YamlSyntax, RuleSeverity.Error, new SourceLocation(source.Name, 1, 1), $"expected exactly one YAML document, found {stream.Documents.Count}"));
                return;
            }

            var root = stream.Documents[0].RootNode;
            if (!CheckNoAnchors(root))
            {
                return;
            }

            if (root is not YamlMappingNode top)
            {
                Error(RuleErrors.WrongType, root, "the file must be a mapping with a 'rules' list");
                return;
            }

            var fields = Fields(top, "top level", RuleKeys.File, RuleKeys.FileRequired);
            if (fields.TryGetValue("version", out var version) && (version is not YamlScalarNode { Value: "1" }))
            {
                Error(RuleErrors.WrongType, version, "'version' must be 1");
            }

            if (!fields.TryGetValue("rules", out var rulesNode))
            {
                return;
            }

            if (rulesNode is not YamlSequenceNode list)
            {
                Error(RuleErrors.WrongType, rulesNode, "'rules' must be a list of rules");
                return;
            }

            foreach (var item in list)
            {
                var rule = CompileRule(item);
                if (rule is not null)
                {
                    rules.Add(rule);
                }
            }
        }

        /// <summary>
        /// Streams the parser events once and refuses nesting deeper than <see cref="MaxYamlDepth"/> before the
        /// recursive tree builder runs: a deeply nested file must be an error, not a stack overflow.
        /// </summary>
        private bool CheckDepth()
        {
            var parser = new Parser(new StringReader(source.Text));
            var depth = 0;
            try
            {
                while (parser.MoveNext())
                {
                    switch (parser.Current)
                    {
                        case YamlDotNet.Core.Events.MappingStart or YamlDotNet.Core.Events.SequenceStart:
                            if (++depth > MaxYamlDepth)
                            {
                                Error(RuleErrors.TooLarge, parser.Current.Start, $"nesting deeper than {MaxYamlDepth} levels");
                                return false;
                            }

                            break;
                        case YamlDotNet.Core.Events.MappingEnd or YamlDotNet.Core.Events.SequenceEnd:
                            depth--;
                            break;
                    }
                }
            }
            catch (YamlException)
            {
                // Syntax errors are reported, with their position, by the full load that follows.
            }

            return true;
        }

        private static string Clean(string message)
        {
            var i = message.IndexOf("): ", StringComparison.Ordinal);
            return i >= 0 ? message[(i + 3)..] : message;
        }

        private bool CheckNoAnchors(YamlNode root)
        {
            var ok = true;
            var stack = new Stack<YamlNode>();
            var seen = new HashSet<YamlNode>(ReferenceEqualityComparer.Instance);
            stack.Push(root);
            while (stack.Count > 0)
            {
                var node = stack.Pop();
                if (!seen.Add(node) || !node.Anchor.IsEmpty)
                {
                    // A node reached twice is an alias; an anchor invites one. Both make files harder to review.
                    Error(RuleErrors.AliasNotAllowed, node, "YAML anchors and aliases are not allowed in rules files");
                    ok = false;
                    continue;
                }

                switch (node)
                {
                    case YamlMappingNode m:
                        // Keys are compared by text: YamlDotNet tells "stage" and "!!str stage" apart, YAML does not.
                        var keys = new HashSet<string>(StringComparer.Ordinal);
                        foreach (var kv in m.Children)
                        {
                            if (kv.Key is YamlScalarNode { Value: { } text } && !keys.Add(text))
                            {
                                Error(RuleErrors.DuplicateKey, kv.Key, $"duplicate key '{text}' in mapping");
                                ok = false;
                            }

                            stack.Push(kv.Key);
                            stack.Push(kv.Value);
                        }

                        break;
                    case YamlSequenceNode s:
                        foreach (var child in s.Children)
                        {
                            stack.Push(child);
                        }

                        break;
                }
            }

            return ok;
        }

        /// <summary>Reads a mapping's keys, reporting unknown and missing ones.</summary>
        private Dictionary<string, YamlNode> Fields(YamlMappingNode map, string what, string[] allowed, string[] required) =>
            YamlFields.Read(map, what, allowed, required, (id, node, message) => Error(id, node, message));

        private string? Text(YamlNode node, string what)
        {
            if (node is YamlScalarNode scalar && scalar.Value is not null && !IsNull(scalar))
            {
                return scalar.Value;
            }

            Error(RuleErrors.WrongType, node, $"{what} must be a string");
            return null;
        }

        private static bool IsNull(YamlScalarNode scalar) =>
            scalar.Style == ScalarStyle.Plain && scalar.Value is "" or "~" or "null" or "Null" or "NULL";

        private List<(string Value, YamlNode Node)>? TextList(YamlNode node, string what)
        {
            if (node is not YamlSequenceNode seq)
            {
                Error(RuleErrors.WrongType, node, $"{what} must be a list of strings");
                return null;
            }

            var values = new List<(string, YamlNode)>();
            foreach (var item in seq)
            {
                var text = Text(item, $"each entry of {what}");
                if (text is not null)
                {
                    values.Add((text, item));
                }
            }

            return values;
        }

        private TrustRule? CompileRule(YamlNode node)
        {
            if (node is not YamlMappingNode map)
            {
                Error(RuleErrors.WrongType, node, "each rule must be a mapping");
                return null;
            }

            var errorsBefore = diagnostics.Count(d => d.Severity == RuleSeverity.Error);
            var f = Fields(map, "a rule", RuleKeys.Rule, RuleKeys.RuleRequired);

            string? id = null;
            if (f.TryGetValue("id", out var idNode) && (id = Text(idNode, "'id'")) is not null)
            {
                if (!RuleIdRegex().IsMatch(id))
                {
                    Error(RuleErrors.InvalidRuleId, idNode, $"rule id '{id}' must match [a-z0-9][a-z0-9._-]{{0,63}}");
                }
                else if (seenIds.TryGetValue(id, out var first))
                {
                    Error(RuleErrors.DuplicateRuleId, idNode, $"rule id '{id}' is already used at {first}");
                }
                else
                {
                    seenIds[id] = At(idNode);
                }
            }

            string? description = null;
            if (f.TryGetValue("description", out var descNode))
            {
                description = Text(descNode, "'description'");
            }

            ProviderDescriptor? provider = null;
            if (f.TryGetValue("provider", out var providerNode) && Text(providerNode, "'provider'") is { } providerName)
            {
                if (!owner._providers.TryGetValue(providerName, out provider))
                {
                    Error(RuleErrors.UnknownProvider, providerNode, $"provider '{providerName}' is not configured; configured: {string.Join(", ", owner._providers.Keys.Order(StringComparer.Ordinal))}");
                }
            }

            var allowPr = false;
            if (f.TryGetValue("allow_pull_requests", out var prNode))
            {
                allowPr = Bool(prNode, "'allow_pull_requests'") ?? false;
            }

            var conditions = new List<ClaimCondition>();
            if (f.TryGetValue("when", out var whenNode) && provider is not null)
            {
                CompileWhen(whenNode, provider, conditions);
            }

            Grant? grant = null;
            if (f.TryGetValue("grant", out var grantNode) && provider is not null)
            {
                grant = CompileGrant(grantNode, provider);
            }

            if (provider is not null && f.ContainsKey("when"))
            {
                CheckOwnerPin(map, provider, conditions, f.GetValueOrDefault("when"));
            }

            if (provider is not null && grant is not null)
            {
                CheckPullRequests(map, provider, conditions, grant, allowPr, f.GetValueOrDefault("when"));
            }

            var errorsAfter = diagnostics.Count(d => d.Severity == RuleSeverity.Error);
            if (errorsAfter > errorsBefore || id is null || provider is null || grant is null)
            {
                return null;
            }

            return new TrustRule
            {
                Id = id,
                Description = description,
                Provider = provider.Name,
                Conditions = conditions,
                AllowPullRequests = allowPr,
                Grant = grant,
                Location = At(map),
            };
        }

        private bool? Bool(YamlNode node, string what)
        {
            if (node is YamlScalarNode { Style: ScalarStyle.Plain, Value: "true" or "false" } s)
            {
                return s.Value == "true";
            }

            Error(RuleErrors.WrongType, node, $"{what} must be true or false");
            return null;
        }

        private void CompileWhen(YamlNode node, ProviderDescriptor provider, List<ClaimCondition> conditions)
        {
            if (node is not YamlMappingNode map || map.Children.Count == 0)
            {
                Error(RuleErrors.WrongType, node, "'when' must be a non-empty mapping of claim: condition (a rule with no condition would match every token)");
                return;
            }

            foreach (var (keyNode, valueNode) in map.Children)
            {
                if (keyNode is not YamlScalarNode { Value: { } claim })
                {
                    Error(RuleErrors.WrongType, keyNode, "claim names in 'when' must be plain strings");
                    continue;
                }

                var accessor = provider.Vocabulary.Resolve(claim);
                if (accessor is null)
                {
                    Error(RuleErrors.UnknownClaim, keyNode, $"claim '{claim}' is not defined for provider '{provider.Name}' ({provider.Kind}); check the rule-language reference for the claim names");
                    continue;
                }

                var condition = CompileCondition(valueNode, claim, 0);
                if (condition is not null)
                {
                    conditions.Add(new ClaimCondition(claim, accessor, condition, At(keyNode)));
                }
            }
        }

        private Condition? CompileCondition(YamlNode node, string claim, int depth)
        {
            if (node is YamlScalarNode)
            {
                var text = Text(node, $"the condition on '{claim}'");
                return text is null ? null : new ExactCondition(text);
            }

            if (node is not YamlMappingNode map || map.Children.Count != 1)
            {
                Error(RuleErrors.InvalidCondition, node, $"the condition on '{claim}' must be a string (exact match) or a mapping with exactly one of: in, glob, regex, not");
                return null;
            }

            var (opNode, arg) = map.Children.First();
            var op = (opNode as YamlScalarNode)?.Value;
            switch (op)
            {
                case "in":
                    var values = TextList(arg, $"'in' on '{claim}'");
                    if (values is null)
                    {
                        return null;
                    }

                    if (values.Count == 0)
                    {
                        Error(RuleErrors.InvalidCondition, arg, $"'in' on '{claim}' needs at least one value");
                        return null;
                    }

                    return new InCondition(values.Select(v => v.Value));
                case "glob":
                    var glob = Text(arg, $"'glob' on '{claim}'");
                    if (glob is null)
                    {
                        return null;
                    }

                    if (glob.Length == 0 || glob.Length > MaxPatternLength)
                    {
                        Error(RuleErrors.InvalidGlob, arg, $"'glob' on '{claim}' must be 1 to {MaxPatternLength} characters");
                        return null;
                    }

                    if (glob.Contains("**", StringComparison.Ordinal))
                    {
                        Error(RuleErrors.InvalidGlob, arg, $"'glob' on '{claim}' contains '**'; '*' never crosses '/', list each level or use 'regex'");
                        return null;
                    }

                    return new GlobCondition(glob);
                case "regex":
                    var pattern = Text(arg, $"'regex' on '{claim}'");
                    if (pattern is null)
                    {
                        return null;
                    }

                    if (pattern.Length == 0 || pattern.Length > MaxPatternLength)
                    {
                        Error(RuleErrors.InvalidRegex, arg, $"'regex' on '{claim}' must be 1 to {MaxPatternLength} characters");
                        return null;
                    }

                    try
                    {
                        // The pattern must parse on its own first: otherwise "a)|(b" would close the anchoring group
                        // below and smuggle in an unanchored alternative.
                        _ = new Regex(pattern, RegexOptions.NonBacktracking | RegexOptions.CultureInvariant | RegexOptions.ExplicitCapture);

                        // Anchored to the whole value (\A...\z, so a trailing newline cannot slip past '$'),
                        // and run by the linear-time engine.
                        var regex = new Regex(
                            $"\\A(?:{pattern})\\z",
                            RegexOptions.NonBacktracking | RegexOptions.CultureInvariant | RegexOptions.ExplicitCapture,
                            RegexCondition.Timeout);
                        return new RegexCondition(pattern, regex);
                    }
                    catch (Exception e) when (e is ArgumentException or NotSupportedException)
                    {
                        // NotSupportedException: constructs the linear-time engine cannot run (lookarounds,
                        // backreferences, atomic groups, conditionals).
                        Error(RuleErrors.InvalidRegex, arg, $"'regex' on '{claim}' is not a valid expression for the linear-time engine: {e.Message}");
                        return null;
                    }

                case "not":
                    if (depth > 2)
                    {
                        Error(RuleErrors.InvalidCondition, arg, $"'not' on '{claim}' is nested too deeply");
                        return null;
                    }

                    var inner = CompileCondition(arg, claim, depth + 1);
                    return inner is null ? null : new NotCondition(inner);
                default:
                    Error(RuleErrors.InvalidCondition, opNode, $"unknown operator '{op}' on '{claim}'; use in, glob, regex or not (exact match is a plain string)");
                    return null;
            }
        }

        private Grant? CompileGrant(YamlNode node, ProviderDescriptor provider)
        {
            if (node is not YamlMappingNode map)
            {
                Error(RuleErrors.WrongType, node, "'grant' must be a mapping");
                return null;
            }

            var before = diagnostics.Count(d => d.Severity == RuleSeverity.Error);
            var f = Fields(map, "'grant'", RuleKeys.Grant, RuleKeys.GrantRequired);

            var audiences = new List<string>();
            if (f.TryGetValue("audiences", out var audNode) && TextList(audNode, "'audiences'") is { } auds)
            {
                if (auds.Count == 0)
                {
                    Error(RuleErrors.InvalidAudience, audNode, "'audiences' needs at least one audience");
                }

                foreach (var (aud, n) in auds)
                {
                    if (aud.Length == 0 || aud.Length > 512 || aud.Any(char.IsWhiteSpace) || aud.Any(char.IsControl))
                    {
                        Error(RuleErrors.InvalidAudience, n, $"audience '{aud}' must be 1 to 512 characters without spaces");
                    }
                    else if (audiences.Contains(aud, StringComparer.Ordinal))
                    {
                        Error(RuleErrors.InvalidAudience, n, $"audience '{aud}' is listed twice");
                    }
                    else
                    {
                        audiences.Add(aud);
                    }
                }
            }

            var scopes = new List<string>();
            if (f.TryGetValue("scopes", out var scopeNode) && TextList(scopeNode, "'scopes'") is { } scs)
            {
                foreach (var (scope, n) in scs)
                {
                    // RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
                    if (scope.Length == 0 || scope.Length > 256 || scope.Any(c => c < 0x21 || c > 0x7E || c == '"' || c == '\\'))
                    {
                        Error(RuleErrors.InvalidScope, n, $"scope '{scope}' is not a valid OAuth scope token");
                    }
                    else if (!scopes.Contains(scope, StringComparer.Ordinal))
                    {
                        scopes.Add(scope);
                    }
                }
            }

            string? stage = null;
            if (f.TryGetValue("stage", out var stageNode) && (stage = Text(stageNode, "'stage'")) is not null && !StageRegex().IsMatch(stage))
            {
                Error(RuleErrors.InvalidStage, stageNode, $"stage '{stage}' must match [a-z][a-z0-9_-]{{0,31}}");
            }

            var ttl = owner._options.DefaultTtl;
            if (f.TryGetValue("ttl", out var ttlNode) && Text(ttlNode, "'ttl'") is { } ttlText)
            {
                if (!TryParseDuration(ttlText, out ttl) || ttl <= TimeSpan.Zero)
                {
                    Error(RuleErrors.InvalidDuration, ttlNode, $"ttl '{ttlText}' is not a positive duration such as 90s, 10m or 1h");
                }
                else if (ttl > owner._options.MaxTtl)
                {
                    Error(RuleErrors.TtlAboveMaximum, ttlNode, $"ttl {ttlText} is above the configured maximum of {FormatDuration(owner._options.MaxTtl)}",
                        $"lower 'ttl' to {FormatDuration(owner._options.MaxTtl)} or less (jobs can exchange again for a fresh token), or raise TokenBroker:Rules:MaxTtl deliberately");
                }
            }

            Template? subject = null;
            if (f.TryGetValue("subject", out var subjectNode) && Text(subjectNode, "'subject'") is { } subjectText)
            {
                subject = Template.Parse(subjectText, provider.Vocabulary, out var error);
                if (subject is null)
                {
                    Error(RuleErrors.InvalidTemplate, subjectNode, $"'subject': {error}");
                }
                else if (subjectText.Length == 0)
                {
                    Error(RuleErrors.InvalidTemplate, subjectNode, "'subject' must not be empty");
                }
            }

            var claims = new List<KeyValuePair<string, ClaimValueTemplate>>();
            if (f.TryGetValue("claims", out var claimsNode))
            {
                if (claimsNode is not YamlMappingNode claimsMap)
                {
                    Error(RuleErrors.WrongType, claimsNode, "'claims' must be a mapping of claim name to value");
                }
                else
                {
                    foreach (var (keyNode, valueNode) in claimsMap.Children)
                    {
                        var name = (keyNode as YamlScalarNode)?.Value;
                        if (string.IsNullOrEmpty(name))
                        {
                            Error(RuleErrors.WrongType, keyNode, "claim names must be non-empty strings");
                            continue;
                        }

                        if (ReservedClaims.Contains(name))
                        {
                            Error(RuleErrors.ReservedClaim, keyNode, $"claim '{name}' is set by the broker and cannot be set by a rule");
                            continue;
                        }

                        var value = CompileClaimValue(valueNode, provider, 1);
                        if (value is not null)
                        {
                            claims.Add(new(name, value));
                        }
                    }
                }
            }

            // Audiences for which tokens this rule issued may be exchanged again for narrower ones (multi-step
            // pipelines). Each must be one of the rule's own audiences: downscoping never widens.
            var downscope = new List<string>();
            if (f.TryGetValue("downscope_audiences", out var downscopeNode) && TextList(downscopeNode, "'downscope_audiences'") is { } dss)
            {
                foreach (var (aud, n) in dss)
                {
                    if (!audiences.Contains(aud, StringComparer.Ordinal))
                    {
                        Error(RuleErrors.InvalidAudience, n, $"downscope audience '{aud}' is not one of the rule's audiences");
                    }
                    else if (!downscope.Contains(aud, StringComparer.Ordinal))
                    {
                        downscope.Add(aud);
                    }
                }
            }

            var after = diagnostics.Count(d => d.Severity == RuleSeverity.Error);
            if (after > before || stage is null || subject is null)
            {
                return null;
            }

            return new Grant { Audiences = audiences, Scopes = scopes, Stage = stage, Ttl = ttl, Subject = subject, Claims = claims, DownscopeAudiences = downscope };
        }

        private ClaimValueTemplate? CompileClaimValue(YamlNode node, ProviderDescriptor provider, int depth)
        {
            if (depth > MaxClaimDepth)
            {
                Error(RuleErrors.WrongType, node, $"claim values nest at most {MaxClaimDepth} levels");
                return null;
            }

            switch (node)
            {
                case YamlScalarNode:
                    var text = Text(node, "a claim value");
                    if (text is null)
                    {
                        return null;
                    }

                    var template = Template.Parse(text, provider.Vocabulary, out var error);
                    if (template is null)
                    {
                        Error(RuleErrors.InvalidTemplate, node, error!);
                        return null;
                    }

                    return new ClaimValueTemplate.Text(template);
                case YamlSequenceNode seq:
                    var items = new List<ClaimValueTemplate>();
                    foreach (var item in seq)
                    {
                        var value = CompileClaimValue(item, provider, depth + 1);
                        if (value is not null)
                        {
                            items.Add(value);
                        }
                    }

                    return new ClaimValueTemplate.List(items);
                case YamlMappingNode map:
                    var entries = new List<KeyValuePair<string, ClaimValueTemplate>>();
                    foreach (var (k, v) in map.Children)
                    {
                        var key = (k as YamlScalarNode)?.Value;
                        if (string.IsNullOrEmpty(key))
                        {
                            Error(RuleErrors.WrongType, k, "keys in claim values must be non-empty strings");
                            continue;
                        }

                        var value = CompileClaimValue(v, provider, depth + 1);
                        if (value is not null)
                        {
                            entries.Add(new(key, value));
                        }
                    }

                    return new ClaimValueTemplate.Map(entries);
                default:
                    Error(RuleErrors.WrongType, node, "unsupported claim value");
                    return null;
            }
        }

        private void CheckOwnerPin(YamlMappingNode ruleNode, ProviderDescriptor provider, List<ClaimCondition> conditions, YamlNode? whenNode)
        {
            if (provider.SharedIssuer)
            {
                var ownerId = provider.Vocabulary.Neutral("owner_id");
                // Only a finite set of non-empty literals on the owner-id claim itself pins a tenant;
                // globs, regexes, negations and derived values do not.
                var pinned = ownerId is not null && conditions.Any(c =>
                    !c.Accessor.IsDerived && c.Accessor.Source == ownerId.Source &&
                    c.Condition.FiniteValues is { Count: > 0 } values && values.All(v => v.Length > 0));
                if (!pinned)
                {
                    Error(
                        RuleErrors.SharedIssuerWithoutOwnerPin,
                        whenNode ?? ruleNode,
                        $"provider '{provider.Name}' is a shared issuer: the rule must pin 'owner_id' ({ownerId?.Source}) to an exact value or an 'in' list, or any tenant of that issuer could match",
                        $"add 'owner_id: \"<numeric id of your organisation or group>\"' to 'when' (ids cannot be re-registered; names can)");
                }
            }
        }

        private void CheckPullRequests(YamlMappingNode ruleNode, ProviderDescriptor provider, List<ClaimCondition> conditions, Grant grant, bool allowPr, YamlNode? whenNode)
        {
            if (grant.Stage != TrustRule.ReadStage && !allowPr)
            {
                var eventAccessor = provider.Vocabulary.Neutral("event");
                foreach (var c in conditions)
                {
                    if (eventAccessor is null || c.Accessor.IsDerived || c.Accessor.Source != eventAccessor.Source || c.Condition.FiniteValues is not { } admitted)
                    {
                        continue;
                    }

                    var pr = admitted.Where(provider.Vocabulary.PullRequestEvents.Contains).ToList();
                    if (pr.Count > 0)
                    {
                        Error(
                            RuleErrors.PullRequestToPrivilegedStage,
                            whenNode ?? ruleNode,
                            $"the rule admits pull-request events ({string.Join(", ", pr)}) for stage '{grant.Stage}'; only stage 'read' may serve pull requests unless the rule sets 'allow_pull_requests: true'",
                            "remove the pull-request events from 'event', or give pull requests their own rule with stage 'read'");
                    }
                }
            }
        }

    }

    /// <summary>Parses durations such as <c>90s</c>, <c>10m</c>, <c>1h</c> or <c>1h30m</c>.</summary>
    public static bool TryParseDuration(string text, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        var m = DurationRegex().Match(text);
        if (text.Length == 0 || !m.Success)
        {
            return false;
        }

        long seconds = 0;
        foreach (var (group, unit) in new[] { ("h", 3600L), ("m", 60L), ("s", 1L) })
        {
            if (m.Groups[group].Success)
            {
                if (!long.TryParse(m.Groups[group].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > 1_000_000)
                {
                    return false;
                }

                seconds += n * unit;
            }
        }

        value = TimeSpan.FromSeconds(seconds);
        return true;
    }

    /// <summary>Formats a duration the way rules write it.</summary>
    public static string FormatDuration(TimeSpan value)
    {
        var s = (long)value.TotalSeconds;
        var parts = new List<string>();
        if (s >= 3600)
        {
            parts.Add($"{s / 3600}h");
            s %= 3600;
        }

        if (s >= 60)
        {
            parts.Add($"{s / 60}m");
            s %= 60;
        }

        if (s > 0 || parts.Count == 0)
        {
            parts.Add($"{s}s");
        }

        return string.Concat(parts);
    }

    [GeneratedRegex(@"\A[a-z0-9][a-z0-9._-]{0,63}\z", RegexOptions.CultureInvariant)]
    private static partial Regex RuleIdRegex();

    [GeneratedRegex(@"\A[a-z][a-z0-9_-]{0,31}\z", RegexOptions.CultureInvariant)]
    private static partial Regex StageRegex();

    [GeneratedRegex(@"\A(?:(?<h>[0-9]{1,7})h)?(?:(?<m>[0-9]{1,7})m)?(?:(?<s>[0-9]{1,7})s)?\z", RegexOptions.CultureInvariant)]
    private static partial Regex DurationRegex();
}

/// <summary>The outcome of compiling rules: the rule set (when there was no error) and every finding.</summary>
public sealed record RuleLoadResult(RuleSet? RuleSet, IReadOnlyList<RuleDiagnostic> Diagnostics)
{
    public bool HasErrors => RuleSet is null;
}
