using System.Text;
using TokenBroker.Rules.Providers;

namespace TokenBroker.Rules.Model;

/// <summary>
/// A string with <c>{claim}</c> placeholders, compiled once. <c>{{</c> and <c>}}</c> stand for literal braces.
/// Placeholders name claims of the rule's provider, or <c>provider</c>, <c>rule</c> and <c>stage</c>.
/// </summary>
public sealed class Template
{
    private readonly Part[] _parts;

    private Template(string source, Part[] parts)
    {
        Source = source;
        _parts = parts;
    }

    public string Source { get; }

    /// <summary>The claim names the template reads.</summary>
    public IEnumerable<string> Placeholders => _parts.Where(p => p.Name is not null).Select(p => p.Name!);

    /// <summary>Renders the template; returns false and the first missing placeholder when a claim is absent.</summary>
    public bool TryRender(IJobClaims claims, TemplateContext context, out string result, out string? missing)
    {
        if (_parts.Length == 1 && _parts[0].Name is null)
        {
            result = _parts[0].Literal!;
            missing = null;
            return true;
        }

        var sb = new StringBuilder();
        foreach (var part in _parts)
        {
            if (part.Name is null)
            {
                sb.Append(part.Literal);
                continue;
            }

            var value = part.Name switch
            {
                "provider" => context.Provider,
                "rule" => context.RuleId,
                "stage" => context.Stage,
                _ => part.Accessor!.Read(claims),
            };
            if (value is null)
            {
                result = string.Empty;
                missing = part.Name;
                return false;
            }

            sb.Append(value);
        }

        result = sb.ToString();
        missing = null;
        return true;
    }

    /// <summary>Parses a template; returns null and an error message when it is malformed or names an unknown claim.</summary>
    public static Template? Parse(string source, ClaimVocabulary vocabulary, out string? error)
    {
        var parts = new List<Part>();
        var literal = new StringBuilder();
        for (var i = 0; i < source.Length; i++)
        {
            var c = source[i];
            if (c == '{' && i + 1 < source.Length && source[i + 1] == '{')
            {
                literal.Append('{');
                i++;
            }
            else if (c == '}' && i + 1 < source.Length && source[i + 1] == '}')
            {
                literal.Append('}');
                i++;
            }
            else if (c == '{')
            {
                var end = source.IndexOf('}', i + 1);
                if (end < 0)
                {
                    error = $"unclosed '{{' at offset {i}";
                    return null;
                }

                var name = source[(i + 1)..end];
                ClaimAccessor? accessor = null;
                if (name is not ("provider" or "rule" or "stage"))
                {
                    accessor = vocabulary.Resolve(name);
                    if (accessor is null)
                    {
                        error = name.Length == 0 ? "empty placeholder '{}'" : $"placeholder '{{{name}}}' names a claim this provider does not define";
                        return null;
                    }
                }

                if (literal.Length > 0)
                {
                    parts.Add(new Part(literal.ToString(), null, null));
                    literal.Clear();
                }

                parts.Add(new Part(null, name, accessor));
                i = end;
            }
            else if (c == '}')
            {
                error = $"unmatched '}}' at offset {i}; write '}}}}' for a literal brace";
                return null;
            }
            else
            {
                literal.Append(c);
            }
        }

        if (literal.Length > 0 || parts.Count == 0)
        {
            parts.Add(new Part(literal.ToString(), null, null));
        }

        error = null;
        return new Template(source, [.. parts]);
    }

    private sealed record Part(string? Literal, string? Name, ClaimAccessor? Accessor);
}

/// <summary>Values a template may use besides claims.</summary>
public readonly record struct TemplateContext(string Provider, string RuleId, string Stage);
