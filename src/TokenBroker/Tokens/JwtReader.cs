using System.Text;
using System.Text.Json;
using TokenBroker.Errors;

namespace TokenBroker.Tokens;

/// <summary>Limits applied while reading a token, before any cryptography.</summary>
internal readonly record struct JwtReadLimits(int MaxTokenBytes, int MaxClaims, int MaxJsonDepth);

/// <summary>
/// Reads a compact JWS strictly and without trusting anything in it: size first, then shape, strict base64url,
/// strict UTF-8 JSON objects (no duplicate members, bounded depth), and header checks. It verifies nothing
/// cryptographic; <see cref="SubjectTokenValidator"/> does that with the issuer's keys.
/// </summary>
internal static class JwtReader
{
    private static readonly string[] ForbiddenHeaders = ["jku", "x5u", "jwk", "x5c"];

    /// <summary>The <c>typ</c> values of CI job tokens.</summary>
    public static readonly string[] JobTokenTypes = ["JWT"];

    /// <summary>The <c>typ</c> values of tokens this broker issues.</summary>
    public static readonly string[] BrokerTokenTypes = ["at+jwt", "JWT"];

    /// <param name="token">The compact JWS.</param>
    /// <param name="allowedAlgorithms">The algorithm allow-list.</param>
    /// <param name="limits">Size limits, checked before parsing.</param>
    /// <param name="acceptedTypes">
    /// Accepted <c>typ</c> values (compared ignoring case, as media types are). Default: job tokens, <c>JWT</c> or no
    /// <c>typ</c>, so that e.g. the broker's own <c>at+jwt</c> access tokens are never taken for job tokens. A missing
    /// <c>typ</c> is accepted only when <c>JWT</c> is.
    /// </param>
    public static JwtReadResult Read(string token, IReadOnlySet<string> allowedAlgorithms, JwtReadLimits limits, IReadOnlyList<string>? acceptedTypes = null)
    {
        if (token.Length > limits.MaxTokenBytes)
        {
            return JwtReadResult.Fail(BrokerErrors.TokenTooLarge, $"token is {token.Length} characters; the limit is {limits.MaxTokenBytes}");
        }

        var dots = 0;
        foreach (var c in token)
        {
            if (c == '.')
            {
                dots++;
            }
        }

        if (dots == 4)
        {
            return JwtReadResult.Fail(BrokerErrors.TokenEncrypted, "token has five segments (JWE compact serialization)");
        }

        if (dots != 2)
        {
            return JwtReadResult.Fail(BrokerErrors.TokenMalformed, $"token has {dots + 1} segments; a JWS has 3");
        }

        var first = token.IndexOf('.');
        var second = token.IndexOf('.', first + 1);
        var headerText = token.AsSpan(0, first);
        var payloadText = token.AsSpan(first + 1, second - first - 1);
        var signatureText = token.AsSpan(second + 1);
        if (headerText.IsEmpty || payloadText.IsEmpty || signatureText.IsEmpty)
        {
            return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "token has an empty segment (unsigned tokens are never accepted)");
        }

        if (!Base64Url.TryDecodeStrict(headerText, out var headerBytes) ||
            !Base64Url.TryDecodeStrict(payloadText, out var payloadBytes) ||
            !Base64Url.TryDecodeStrict(signatureText, out var signature))
        {
            return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "a segment is not canonical unpadded base64url");
        }

        // JsonDocument does not validate UTF-8 inside strings it has not decoded yet; check it up front.
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes) || !System.Text.Unicode.Utf8.IsValid(payloadBytes))
        {
            return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "header or payload is not valid UTF-8");
        }

        // The depth limit holds before the JSON parser runs (and does not depend on the text of a parser exception).
        if (NestsDeeperThan(headerBytes, limits.MaxJsonDepth) || NestsDeeperThan(payloadBytes, limits.MaxJsonDepth))
        {
            return JwtReadResult.Fail(BrokerErrors.TokenLimits, $"JSON nesting exceeds {limits.MaxJsonDepth}");
        }

        var jsonOptions = new JsonDocumentOptions { MaxDepth = limits.MaxJsonDepth, AllowDuplicateProperties = false };
        JsonDocument? header = null;
        JsonDocument? payload = null;
        try
        {
            header = JsonDocument.Parse(headerBytes, jsonOptions);
            payload = JsonDocument.Parse(payloadBytes, jsonOptions);
        }
        catch (JsonException)
        {
            header?.Dispose();
            return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "header or payload is not valid UTF-8 JSON without duplicate members");
        }

        var ok = false;
        try
        {
            if (header.RootElement.ValueKind != JsonValueKind.Object || payload.RootElement.ValueKind != JsonValueKind.Object)
            {
                return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "header or payload is not a JSON object");
            }

            // Limits first, before anything in the header is interpreted.
            var claimCount = 0;
            foreach (var _ in payload.RootElement.EnumerateObject())
            {
                claimCount++;
            }

            if (claimCount > limits.MaxClaims)
            {
                return JwtReadResult.Fail(BrokerErrors.TokenLimits, $"payload has {claimCount} claims; the limit is {limits.MaxClaims}");
            }

            var h = header.RootElement;
            if (h.TryGetProperty("enc", out _))
            {
                return JwtReadResult.Fail(BrokerErrors.TokenEncrypted, "header has 'enc' (JWE)");
            }

            if (!h.TryGetProperty("alg", out var algElement) || algElement.ValueKind != JsonValueKind.String)
            {
                return JwtReadResult.Fail(BrokerErrors.TokenAlgorithm, "header has no string 'alg'");
            }

            var alg = algElement.GetString()!;
            if (!allowedAlgorithms.Contains(alg))
            {
                return JwtReadResult.Fail(BrokerErrors.TokenAlgorithm, $"algorithm '{Printable(alg)}' is not in the allow-list");
            }

            foreach (var name in ForbiddenHeaders)
            {
                if (h.TryGetProperty(name, out _))
                {
                    return JwtReadResult.Fail(BrokerErrors.TokenHeaderForbidden, $"header carries '{name}', which the broker never dereferences or trusts");
                }
            }

            if (h.TryGetProperty("crit", out _))
            {
                return JwtReadResult.Fail(BrokerErrors.TokenCrit, "header has 'crit'; the broker understands no critical extension");
            }

            string? kid = null;
            if (h.TryGetProperty("kid", out var kidElement))
            {
                if (kidElement.ValueKind != JsonValueKind.String)
                {
                    return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "header 'kid' is not a string");
                }

                kid = kidElement.GetString();
            }

            acceptedTypes ??= JobTokenTypes;
            var typOk = h.TryGetProperty("typ", out var typElement)
                ? typElement.ValueKind == JsonValueKind.String && acceptedTypes.Contains(typElement.GetString()!, StringComparer.OrdinalIgnoreCase)
                : acceptedTypes.Contains("JWT", StringComparer.OrdinalIgnoreCase);
            if (!typOk)
            {
                return JwtReadResult.Fail(BrokerErrors.TokenMalformed, $"header 'typ' is not one of {string.Join(", ", acceptedTypes)}");
            }

            ok = true;
            return JwtReadResult.Success(new ParsedJwt(alg, kid, header, payload, Encoding.ASCII.GetBytes(token, 0, second), signature));
        }
        finally
        {
            if (!ok)
            {
                header.Dispose();
                payload.Dispose();
            }
        }
    }

    /// <summary>
    /// True when arrays and objects in <paramref name="json"/> nest deeper than <paramref name="max"/> levels (the
    /// same count as <see cref="JsonDocumentOptions.MaxDepth"/>). A linear scan of the bytes that skips string
    /// contents; it does not validate the JSON, the parser does that afterwards.
    /// </summary>
    internal static bool NestsDeeperThan(ReadOnlySpan<byte> json, int max)
    {
        var depth = 0;
        var inString = false;
        for (var i = 0; i < json.Length; i++)
        {
            var b = json[i];
            if (inString)
            {
                if (b == (byte)'\\')
                {
                    i++;
                }
                else if (b == (byte)'"')
                {
                    inString = false;
                }

                continue;
            }

            switch (b)
            {
                case (byte)'"':
                    inString = true;
                    break;
                case (byte)'{' or (byte)'[':
                    if (++depth > max)
                    {
                        return true;
                    }

                    break;
                case (byte)'}' or (byte)']':
                    depth--;
                    break;
            }
        }

        return false;
    }

    /// <summary>A bounded, printable rendering of an attacker-chosen string for operator logs.</summary>
    public static string Printable(string value)
    {
        var cut = value.Length > 64 ? value[..64] + "..." : value;
        return string.Create(cut.Length, cut, (span, s) =>
        {
            for (var i = 0; i < s.Length; i++)
            {
                span[i] = char.IsControl(s[i]) ? '?' : s[i];
            }
        });
    }
}

/// <summary>A structurally valid, not yet verified JWS. Owns its JSON documents.</summary>
internal sealed class ParsedJwt(string algorithm, string? keyId, JsonDocument header, JsonDocument payload, byte[] signingInput, byte[] signature) : IDisposable
{
    public string Algorithm { get; } = algorithm;
    public string? KeyId { get; } = keyId;
    public JsonElement Header => header.RootElement;
    public JsonElement Payload => payload.RootElement;

    /// <summary>The ASCII bytes of <c>header.payload</c>, the JWS signing input.</summary>
    public byte[] SigningInput { get; } = signingInput;
    public byte[] Signature { get; } = signature;

    /// <summary>Verifies the JWS signature with <paramref name="key"/> and the header's algorithm; false on any failure.</summary>
    public bool VerifySignature(Microsoft.IdentityModel.Tokens.JsonWebKey key) => JwkVerifier.Verify(key, Algorithm, SigningInput, Signature);

    public void Dispose()
    {
        header.Dispose();
        payload.Dispose();
    }
}

internal readonly record struct JwtReadResult(ParsedJwt? Token, BrokerError? Error, string? Detail)
{
    public static JwtReadResult Success(ParsedJwt token) => new(token, null, null);

    public static JwtReadResult Fail(BrokerError error, string detail) => new(null, error, detail);
}
