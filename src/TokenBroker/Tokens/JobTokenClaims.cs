using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using TokenBroker.Rules.Providers;

namespace TokenBroker.Tokens;

/// <summary>
/// The scalar claims of a verified job token, as rules see them: strings as they are, numbers and booleans as
/// their JSON text; arrays, objects and null are absent. Built once per exchange.
/// </summary>
internal sealed class JobTokenClaims : IJobClaims
{
    /// <summary>
    /// The claim names of the built-in providers and of JWT itself, indexed by their UTF-8 length, so that a token's
    /// claim names share these strings instead of allocating new ones per exchange.
    /// </summary>
    private static readonly (byte[] Utf8, string Name)[]?[] KnownNames = IndexByLength(
        ClaimVocabulary.GitHub.RawClaims
            .Concat(ClaimVocabulary.GitLab.RawClaims)
            .Concat(["iss", "aud", "exp", "iat", "nbf", "jti", "azp", "nonce", "auth_time", "amr", "acr", "email", "email_verified", "name", "namespace", "project"])
            .Distinct(StringComparer.Ordinal));

    private readonly Dictionary<string, string> _values;

    public JobTokenClaims(JsonElement payload) => _values = Scalars(payload);

    /// <summary>The scalar claims of a JSON object, as rules see them (also used by <c>rules explain</c> and <c>rules test</c>).</summary>
    public static Dictionary<string, string> Scalars(JsonElement payload)
    {
        var values = new Dictionary<string, string>(payload.GetPropertyCount(), StringComparer.Ordinal);
        foreach (var property in payload.EnumerateObject())
        {
            var value = property.Value.ValueKind switch
            {
                JsonValueKind.String => property.Value.GetString(),
                JsonValueKind.Number => property.Value.GetRawText(),
                JsonValueKind.True => "true",
                JsonValueKind.False => "false",
                _ => null,
            };
            if (value is not null)
            {
                values[Name(property)] = value;
            }
        }

        return values;
    }

    public string? Get(string name) => _values.GetValueOrDefault(name);

    /// <summary>The property's name: a known name's shared string when the raw name is that name unescaped.</summary>
    private static string Name(JsonProperty property)
    {
        // The raw name is the JSON text between the quotes; one with an escape never equals a known name byte for
        // byte, so it falls through to the unescaping property.Name.
        var raw = JsonMarshal.GetRawUtf8PropertyName(property);
        if (raw.Length < KnownNames.Length && KnownNames[raw.Length] is { } candidates)
        {
            foreach (var (utf8, name) in candidates)
            {
                if (raw.SequenceEqual(utf8))
                {
                    return name;
                }
            }
        }

        return property.Name;
    }

    private static (byte[] Utf8, string Name)[]?[] IndexByLength(IEnumerable<string> names)
    {
        var byLength = names.Select(name => (Utf8: Encoding.UTF8.GetBytes(name), Name: name)).ToLookup(n => n.Utf8.Length);
        var index = new (byte[] Utf8, string Name)[]?[byLength.Max(g => g.Key) + 1];
        foreach (var group in byLength)
        {
            index[group.Key] = [.. group];
        }

        return index;
    }
}
