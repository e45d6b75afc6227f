using System.Buffers;
using System.Security.Cryptography;
using System.Text;

namespace TokenBroker.Security;

/// <summary>SHA-256 of text, for token hashes in audit lines and the replay key.</summary>
internal static class Sha256Text
{
    /// <summary>Hex SHA-256 of the UTF-8 bytes of <paramref name="text"/>, encoded into a pooled buffer (no per-call array).</summary>
    public static string Hex(ReadOnlySpan<char> text)
    {
        var max = Encoding.UTF8.GetMaxByteCount(text.Length);
        var rented = max > 512 ? ArrayPool<byte>.Shared.Rent(max) : null;
        Span<byte> utf8 = rented ?? stackalloc byte[512];
        try
        {
            var length = Encoding.UTF8.GetBytes(text, utf8);
            Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
            SHA256.HashData(utf8[..length], digest);
            return Convert.ToHexStringLower(digest);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }
}
