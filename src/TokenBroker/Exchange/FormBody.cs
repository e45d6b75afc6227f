using System.Text;

namespace TokenBroker.Exchange;

/// <summary>
/// A strict parser for <c>application/x-www-form-urlencoded</c> bodies: exact, case-sensitive names (ASP.NET's form
/// collection folds case, which would let <c>Grant_Type</c> stand in for <c>grant_type</c>), strict percent-decoding,
/// strict UTF-8, and a field-count limit.
/// </summary>
internal static class FormBody
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Parses the body; returns null when it is malformed or has more than <paramref name="maxFields"/> fields.</summary>
    public static List<KeyValuePair<string, string>>? Parse(ReadOnlySpan<byte> body, int maxFields, out bool tooManyFields)
    {
        tooManyFields = false;
        var fields = new List<KeyValuePair<string, string>>();
        while (!body.IsEmpty)
        {
            var amp = body.IndexOf((byte)'&');
            var pair = amp < 0 ? body : body[..amp];
            body = amp < 0 ? [] : body[(amp + 1)..];
            if (pair.IsEmpty)
            {
                continue;
            }

            if (fields.Count == maxFields)
            {
                tooManyFields = true;
                return null;
            }

            var eq = pair.IndexOf((byte)'=');
            var name = Decode(eq < 0 ? pair : pair[..eq]);
            var value = eq < 0 ? string.Empty : Decode(pair[(eq + 1)..]);
            if (name is null || value is null || name.Length == 0)
            {
                return null;
            }

            fields.Add(new(name, value));
        }

        return fields;
    }

    private static string? Decode(ReadOnlySpan<byte> encoded)
    {
        var bytes = encoded.Length <= 512 ? stackalloc byte[encoded.Length] : new byte[encoded.Length];
        var n = 0;
        for (var i = 0; i < encoded.Length; i++)
        {
            var b = encoded[i];
            if (b == (byte)'+')
            {
                bytes[n++] = (byte)' ';
            }
            else if (b == (byte)'%')
            {
                if (i + 2 >= encoded.Length || Hex(encoded[i + 1]) is not { } hi || Hex(encoded[i + 2]) is not { } lo)
                {
                    return null;
                }

                bytes[n++] = (byte)(hi << 4 | lo);
                i += 2;
            }
            else if (b < 0x20 || b > 0x7E)
            {
                return null; // raw control or non-ASCII bytes must be percent-encoded
            }
            else
            {
                bytes[n++] = b;
            }
        }

        try
        {
            return StrictUtf8.GetString(bytes[..n]);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    private static int? Hex(byte c) => c switch
    {
        >= (byte)'0' and <= (byte)'9' => c - '0',
        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
        _ => null,
    };
}
