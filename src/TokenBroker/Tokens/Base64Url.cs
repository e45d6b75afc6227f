using System.Buffers;

namespace TokenBroker.Tokens;

/// <summary>Strict base64url (RFC 7515 appendix C): no padding, no whitespace, canonical trailing bits.</summary>
internal static class Base64Url
{
    /// <summary>The base64url alphabet; anything else (padding, whitespace, '+', '/') is refused.</summary>
    private static readonly SearchValues<char> Alphabet = SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");

    public static bool TryDecodeStrict(ReadOnlySpan<char> text, out byte[] bytes)
    {
        if (!IsStrict(text))
        {
            bytes = [];
            return false;
        }

        var decoded = new byte[DecodedLength(text.Length)];
        if (!TryDecode(text, decoded))
        {
            bytes = [];
            return false;
        }

        bytes = decoded;
        return true;
    }

    /// <summary>
    /// True when <paramref name="text"/> is canonical unpadded base64url: only alphabet characters (checked
    /// vectorised), a length that is not 1 modulo 4, and zero unused bits in the last character.
    /// </summary>
    public static bool IsStrict(ReadOnlySpan<char> text)
    {
        if (text.Length % 4 == 1 || text.ContainsAnyExcept(Alphabet))
        {
            return false;
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

        return true;
    }

    /// <summary>The number of bytes <paramref name="chars"/> characters of unpadded base64url decode to.</summary>
    public static int DecodedLength(int chars) => chars / 4 * 3 + (chars % 4 == 0 ? 0 : chars % 4 - 1);

    /// <summary>
    /// Decodes text that <see cref="IsStrict"/> accepted into exactly <see cref="DecodedLength"/> bytes; false if
    /// the decoder disagrees (it cannot for strict text, but the result is checked rather than assumed).
    /// </summary>
    public static bool TryDecode(ReadOnlySpan<char> text, Span<byte> destination) =>
        System.Buffers.Text.Base64Url.DecodeFromChars(text, destination, out var consumed, out var written) == OperationStatus.Done &&
        consumed == text.Length && written == destination.Length;

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
