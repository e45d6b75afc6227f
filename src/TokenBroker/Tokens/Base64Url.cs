namespace TokenBroker.Tokens;

/// <summary>Strict base64url (RFC 7515 appendix C): no padding, no whitespace, canonical trailing bits.</summary>
internal static class Base64Url
{
    public static bool TryDecodeStrict(ReadOnlySpan<char> text, out byte[] bytes)
    {
        bytes = [];
        if (text.Length % 4 == 1)
        {
            return false;
        }

        foreach (var c in text)
        {
            if (!(c is >= 'A' and <= 'Z' or >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '_'))
            {
                return false;
            }
        }

        // Non-canonical encodings (non-zero unused bits in the last character) decode to the same bytes as the
        // canonical one; refusing them keeps one token from having several spellings.
        if (text.Length % 4 != 0)
        {
            var last = Value(text[^1]);
            var unusedBits = text.Length % 4 == 2 ? 4 : 2;
            if ((last & ((1 << unusedBits) - 1)) != 0)
            {
                return false;
            }
        }

        try
        {
            bytes = System.Buffers.Text.Base64Url.DecodeFromChars(text);
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    public static string Encode(ReadOnlySpan<byte> bytes) => System.Buffers.Text.Base64Url.EncodeToString(bytes);

    private static int Value(char c) => c switch
    {
        >= 'A' and <= 'Z' => c - 'A',
        >= 'a' and <= 'z' => c - 'a' + 26,
        >= '0' and <= '9' => c - '0' + 52,
        '-' => 62,
        _ => 63,
    };
}
