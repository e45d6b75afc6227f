using System.Buffers;
using System.Text;

namespace TokenBroker.Exchange;

/// <summary>
/// A strict parser for <c>application/x-www-form-urlencoded</c> bodies: exact, case-sensitive names (ASP.NET's form
/// collection folds case, which would let <c>Grant_Type</c> stand in for <c>grant_type</c>), strict percent-decoding,
/// strict UTF-8, and a field-count limit.
/// </summary>
internal static class FormBody
{
    /// <summary>The bytes that need decoding; a run without them is taken as it is (after the printable check).</summary>
    private static readonly SearchValues<byte> Escapes = SearchValues.Create("%+"u8);

    /// <summary>
    /// The names and fixed values of an exchange, returned as the same string instances rather than a new string per
    /// request (pure allocation saving: the decoded text is compared byte for byte first).
    /// </summary>
    private static readonly (byte[] Utf8, string Text)[] Known = Array.ConvertAll(
        [
            "grant_type", "subject_token", "subject_token_type", "requested_token_type", "audience", "resource", "scope",
            "actor_token", "actor_token_type", "requested_lifetime", "client_id", TokenTypes.TokenExchangeGrant,
            TokenTypes.IdToken, TokenTypes.Jwt, TokenTypes.AccessToken,
        ],
        text => (Encoding.ASCII.GetBytes(text), text));

    /// <summary>Parses the body; returns null when it is malformed or has more than <paramref name="maxFields"/> fields.</summary>
    public static List<KeyValuePair<string, string>>? Parse(ReadOnlySpan<byte> body, int maxFields, out bool tooManyFields)
    {
        tooManyFields = false;
        var fields = new List<KeyValuePair<string, string>>(Math.Min(maxFields, 8));
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
        var first = encoded.IndexOfAny(Escapes);
        if (first < 0)
        {
            // Nothing to decode (a job token is plain base64url): raw control or non-ASCII bytes must be
            // percent-encoded, and printable ASCII is its own UTF-8.
            return encoded.ContainsAnyExceptInRange((byte)0x20, (byte)0x7E) ? null : Text(encoded);
        }

        byte[]? rented = null;
        var bytes = encoded.Length <= 512 ? stackalloc byte[encoded.Length] : (rented = ArrayPool<byte>.Shared.Rent(encoded.Length));
        try
        {
            var n = 0;
            var next = first;
            while (true)
            {
                // The run before the next escape: printable ASCII, copied as it is.
                var run = next < 0 ? encoded : encoded[..next];
                if (run.ContainsAnyExceptInRange((byte)0x20, (byte)0x7E))
                {
                    return null;
                }

                run.CopyTo(bytes[n..]);
                n += run.Length;
                if (next < 0)
                {
                    break;
                }

                if (encoded[next] == (byte)'+')
                {
                    bytes[n++] = (byte)' ';
                    encoded = encoded[(next + 1)..];
                }
                else
                {
                    if (next + 2 >= encoded.Length || Hex(encoded[next + 1]) is not { } hi || Hex(encoded[next + 2]) is not { } lo)
                    {
                        return null;
                    }

                    bytes[n++] = (byte)(hi << 4 | lo);
                    encoded = encoded[(next + 3)..];
                }

                next = encoded.IndexOfAny(Escapes);
            }

            var decoded = bytes[..n];
            return System.Text.Unicode.Utf8.IsValid(decoded) ? Text(decoded) : null;
        }
        finally
        {
            if (rented is not null)
            {
                // Form values carry tokens: do not hand their bytes to the next user of the pool.
                ArrayPool<byte>.Shared.Return(rented, clearArray: true);
            }
        }
    }

    /// <summary>Valid UTF-8 as a string; a known name or value as its shared instance.</summary>
    private static string Text(ReadOnlySpan<byte> utf8)
    {
        if (utf8.Length <= 64)
        {
            foreach (var (known, text) in Known)
            {
                if (utf8.SequenceEqual(known))
                {
                    return text;
                }
            }
        }

        return Encoding.UTF8.GetString(utf8);
    }

    private static int? Hex(byte c) => c switch
    {
        >= (byte)'0' and <= (byte)'9' => c - '0',
        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
        _ => null,
    };
}
