using System.Text.Json;
using TokenBroker.Rules.Providers;

namespace TokenBroker.Tokens;

/// <summary>
/// The scalar claims of a verified job token, as rules see them: strings as they are, numbers and booleans as
/// their JSON text; arrays, objects and null are absent. Built once per exchange.
/// </summary>
internal sealed class JobTokenClaims : IJobClaims
{
    private readonly Dictionary<string, string> _values;

    public JobTokenClaims(JsonElement payload) => _values = Scalars(payload);

    /// <summary>The scalar claims of a JSON object, as rules see them (also used by <c>rules explain</c> and <c>rules test</c>).</summary>
    public static Dictionary<string, string> Scalars(JsonElement payload)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
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
                values[property.Name] = value;
            }
        }

        return values;
    }

    public string? Get(string name) => _values.GetValueOrDefault(name);
}
