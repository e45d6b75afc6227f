using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using TokenBroker.Rules.Evaluation;

namespace TokenBroker.Rules.Tests.Support;

/// <summary>Writes rendered claims as compact JSON, the shape a minted token carries, so tests compare one string.</summary>
internal static class ClaimJson
{
    public static string Serialize(IReadOnlyList<KeyValuePair<string, ClaimValue>> claims)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            Write(writer, new ClaimValue.Map(claims));
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void Write(Utf8JsonWriter writer, ClaimValue value)
    {
        switch (value)
        {
            case ClaimValue.Text text:
                writer.WriteStringValue(text.Value);
                break;
            case ClaimValue.List list:
                writer.WriteStartArray();
                foreach (var item in list.Items)
                {
                    Write(writer, item);
                }

                writer.WriteEndArray();
                break;
            case ClaimValue.Map map:
                writer.WriteStartObject();
                foreach (var (key, item) in map.Entries)
                {
                    writer.WritePropertyName(key);
                    Write(writer, item);
                }

                writer.WriteEndObject();
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(value));
        }
    }
}
