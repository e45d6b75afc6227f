using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TokenBroker.Audit;

/// <summary>
/// Serialises an audit event to one line of JSON. Values come partly from attacker-influenced job-token claims
/// (repository names, run ids), so the line must not be breakable: System.Text.Json's default encoder writes every
/// control character (CR, LF, ESC), U+2028/U+2029 and all non-ASCII as <c>\uXXXX</c> escapes, and
/// <see cref="SafeStringConverter"/> replaces unpaired surrogates (which the encoder would reject) with U+FFFD. The
/// result is pure printable ASCII ending in one <c>\n</c>.
/// </summary>
internal static class AuditJson
{
    /// <summary>The event as one line of UTF-8 JSON including the trailing newline.</summary>
    public static byte[] ToLine(AuditEvent auditEvent)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using var writer = new Utf8JsonWriter(buffer);
        WriteLine(auditEvent, buffer, writer);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Writes the event as one line (with the trailing newline) into <paramref name="buffer"/>, which must be empty,
    /// using <paramref name="writer"/> (any target; it is reset onto the buffer). Lets a single writer thread reuse
    /// one buffer and one JSON writer for every event.
    /// </summary>
    public static void WriteLine(AuditEvent auditEvent, ArrayBufferWriter<byte> buffer, Utf8JsonWriter writer)
    {
        try
        {
            writer.Reset(buffer);
            JsonSerializer.Serialize(writer, auditEvent, AuditJsonContext.Default.AuditEvent);
            writer.Flush();
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or JsonException or NotSupportedException)
        {
            // Never lose the event: write what identifies it, and say why the rest is missing.
            buffer.ResetWrittenCount();
            writer.Reset(buffer);
            writer.WriteStartObject();
            writer.WriteString("type", SafeStringConverter.Clean(auditEvent.Type));
            writer.WriteString("request_id", SafeStringConverter.Clean(auditEvent.RequestId));
            writer.WriteString("time", auditEvent.Time);
            writer.WriteString("outcome", SafeStringConverter.Clean(auditEvent.Outcome));
            if (auditEvent.ErrorId is not null)
            {
                writer.WriteString("error_id", SafeStringConverter.Clean(auditEvent.ErrorId));
            }

            if (auditEvent.IssuedJti is not null)
            {
                writer.WriteString("issued_jti", SafeStringConverter.Clean(auditEvent.IssuedJti));
            }

            writer.WriteString("audit_error", "event could not be serialised in full: " + e.GetType().Name);
            writer.WriteEndObject();
            writer.Flush();
        }

        buffer.Write("\n"u8);
    }
}

/// <summary>Writes strings with unpaired surrogates replaced by U+FFFD, so serialisation never fails on hostile text.</summary>
internal sealed class SafeStringConverter : JsonConverter<string>
{
    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.GetString();

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteStringValue(Clean(value));

    /// <summary>The text with every unpaired surrogate replaced by U+FFFD (the text itself when it has none).</summary>
    public static string Clean(string value)
    {
        // Text without surrogates (nearly all of it) is valid as it is: one vectorised scan.
        var span = value.AsSpan();
        var i = span.IndexOfAnyInRange('\uD800', '\uDFFF');
        if (i < 0)
        {
            return value;
        }

        while (i < span.Length)
        {
            if (Rune.DecodeFromUtf16(span[i..], out _, out var consumed) != OperationStatus.Done)
            {
                break;
            }

            i += consumed;
        }

        if (i == span.Length)
        {
            return value;
        }

        var builder = new StringBuilder(value.Length);
        foreach (var rune in value.EnumerateRunes())
        {
            // EnumerateRunes yields U+FFFD for every unpaired surrogate.
            builder.Append(rune.ToString());
        }

        return builder.ToString();
    }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    Converters = [typeof(SafeStringConverter)])]
[JsonSerializable(typeof(AuditEvent))]
internal sealed partial class AuditJsonContext : JsonSerializerContext;
