using System.Security.Cryptography;

namespace TokenBroker.Security;

/// <summary>
/// Random identifiers (token <c>jti</c>s, request ids) from the operating system's CSPRNG, drawn in batches.
/// </summary>
/// <remarks>
/// One <see cref="RandomNumberGenerator.Fill"/> call per id goes through OpenSSL's RAND layer and its locks on
/// Linux; under load that cost as much CPU as signing the token (measured with <c>dotnet-trace collect-linux</c>,
/// see docs/performance.md). The bytes are the same CSPRNG output, only fetched 512 at a time per thread and each
/// handed out once. Identifiers are not secrets (a <c>jti</c> is published in its token), so holding a few hundred
/// not-yet-used bytes in memory exposes nothing; keys and credential secrets do not come from here.
/// </remarks>
internal static class RandomIds
{
    private const int BatchBytes = 512;

    [ThreadStatic]
    private static byte[]? _batch;

    [ThreadStatic]
    private static int _used;

    /// <summary>Fills <paramref name="destination"/> (at most 64 bytes) with fresh random bytes.</summary>
    public static void Fill(Span<byte> destination)
    {
        if (destination.Length > 64)
        {
            RandomNumberGenerator.Fill(destination);
            return;
        }

        var batch = _batch;
        if (batch is null || _used + destination.Length > BatchBytes)
        {
            batch ??= _batch = new byte[BatchBytes];
            RandomNumberGenerator.Fill(batch);
            _used = 0;
        }

        var slice = batch.AsSpan(_used, destination.Length);
        slice.CopyTo(destination);
        slice.Clear(); // handed out once: never reused, not left behind
        _used += destination.Length;
    }

    /// <summary><paramref name="bytes"/> random bytes as base64url (no padding).</summary>
    public static string NewBase64Url(int bytes)
    {
        Span<byte> buffer = stackalloc byte[bytes];
        Fill(buffer);
        return System.Buffers.Text.Base64Url.EncodeToString(buffer);
    }

    /// <summary><paramref name="bytes"/> random bytes as lower-case hex.</summary>
    public static string NewHex(int bytes)
    {
        Span<byte> buffer = stackalloc byte[bytes];
        Fill(buffer);
        return Convert.ToHexStringLower(buffer);
    }
}
