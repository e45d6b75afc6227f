using System.Buffers;
using System.Runtime.InteropServices;
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
    /// <summary>The bytes that matter to the depth scan outside strings: quote and brackets.</summary>
    private static readonly SearchValues<byte> Structural = SearchValues.Create("\"{}[]"u8);

    /// <summary>The bytes that matter inside a string: its closing quote and the escape character.</summary>
    private static readonly SearchValues<byte> StringSpecial = SearchValues.Create("\"\\"u8);

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

        var text = token.AsSpan();
        var dots = text.Count('.');
        if (dots == 4)
        {
            return JwtReadResult.Fail(BrokerErrors.TokenEncrypted, "token has five segments (JWE compact serialization)");
        }

        if (dots != 2)
        {
            return JwtReadResult.Fail(BrokerErrors.TokenMalformed, $"token has {dots + 1} segments; a JWS has 3");
        }

        var first = text.IndexOf('.');
        var second = first + 1 + text[(first + 1)..].IndexOf('.');
        var headerText = text[..first];
        var payloadText = text[(first + 1)..second];
        var signatureText = text[(second + 1)..];
        if (headerText.IsEmpty || payloadText.IsEmpty || signatureText.IsEmpty)
        {
            return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "token has an empty segment (unsigned tokens are never accepted)");
        }

        if (!Base64Url.IsStrict(headerText) || !Base64Url.IsStrict(payloadText) || !Base64Url.IsStrict(signatureText))
        {
            return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "a segment is not canonical unpadded base64url");
        }

        // Header and payload decode into one array (the documents parse slices of it and keep it alive).
        var headerLength = Base64Url.DecodedLength(headerText.Length);
        var json = new byte[headerLength + Base64Url.DecodedLength(payloadText.Length)];
        var signature = new byte[Base64Url.DecodedLength(signatureText.Length)];
        if (!Base64Url.TryDecode(headerText, json.AsSpan(0, headerLength)) ||
            !Base64Url.TryDecode(payloadText, json.AsSpan(headerLength)) ||
            !Base64Url.TryDecode(signatureText, signature))
        {
            return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "a segment is not canonical unpadded base64url");
        }

        var headerBytes = json.AsMemory(0, headerLength);
        var payloadBytes = json.AsMemory(headerLength);

        // JsonDocument does not validate UTF-8 inside strings it has not decoded yet; check it up front.
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes.Span) || !System.Text.Unicode.Utf8.IsValid(payloadBytes.Span))
        {
            return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "header or payload is not valid UTF-8");
        }

        // The depth limit holds before the JSON parser runs (and does not depend on the text of a parser exception).
        if (NestsDeeperThan(headerBytes.Span, limits.MaxJsonDepth) || NestsDeeperThan(payloadBytes.Span, limits.MaxJsonDepth))
        {
            return JwtReadResult.Fail(BrokerErrors.TokenLimits, $"JSON nesting exceeds {limits.MaxJsonDepth}");
        }

        // Duplicate members are refused just below by DuplicateFree, which decides exactly as the parser's own check
        // (AllowDuplicateProperties = false) does, more cheaply, and falls back to it when a member name is escaped.
        var jsonOptions = new JsonDocumentOptions { MaxDepth = limits.MaxJsonDepth, AllowDuplicateProperties = true };
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

        if (!DuplicateFree(header.RootElement, headerBytes, jsonOptions) || !DuplicateFree(payload.RootElement, payloadBytes, jsonOptions))
        {
            header.Dispose();
            payload.Dispose();
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
            var claimCount = payload.RootElement.GetPropertyCount();
            if (claimCount > limits.MaxClaims)
            {
                return JwtReadResult.Fail(BrokerErrors.TokenLimits, $"payload has {claimCount} claims; the limit is {limits.MaxClaims}");
            }

            var h = header.RootElement;
            if (h.TryGetProperty("enc"u8, out _))
            {
                return JwtReadResult.Fail(BrokerErrors.TokenEncrypted, "header has 'enc' (JWE)");
            }

            if (!h.TryGetProperty("alg"u8, out var algElement) || algElement.ValueKind != JsonValueKind.String)
            {
                return JwtReadResult.Fail(BrokerErrors.TokenAlgorithm, "header has no string 'alg'");
            }

            var alg = algElement.GetString()!;
            if (!allowedAlgorithms.Contains(alg))
            {
                return JwtReadResult.Fail(BrokerErrors.TokenAlgorithm, $"algorithm '{Printable(alg)}' is not in the allow-list");
            }

            if (ForbiddenHeader(h) is { } forbidden)
            {
                return JwtReadResult.Fail(BrokerErrors.TokenHeaderForbidden, $"header carries '{forbidden}', which the broker never dereferences or trusts");
            }

            if (h.TryGetProperty("crit"u8, out _))
            {
                return JwtReadResult.Fail(BrokerErrors.TokenCrit, "header has 'crit'; the broker understands no critical extension");
            }

            string? kid = null;
            if (h.TryGetProperty("kid"u8, out var kidElement))
            {
                if (kidElement.ValueKind != JsonValueKind.String)
                {
                    return JwtReadResult.Fail(BrokerErrors.TokenMalformed, "header 'kid' is not a string");
                }

                kid = kidElement.GetString();
            }

            acceptedTypes ??= JobTokenTypes;
            var typOk = h.TryGetProperty("typ"u8, out var typElement)
                ? typElement.ValueKind == JsonValueKind.String && ContainsIgnoringCase(acceptedTypes, typElement.GetString()!)
                : ContainsIgnoringCase(acceptedTypes, "JWT");
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
    /// True when no object in the document has two members of the same name, exactly as the parser's own check
    /// (<see cref="JsonDocumentOptions.AllowDuplicateProperties"/> false) decides: names are compared unescaped.
    /// Names without an escape are their unescaped bytes, so they are compared raw, through hashes; when a name
    /// has an escape (rare in tokens), the document is parsed again with the parser's check instead.
    /// </summary>
    internal static bool DuplicateFree(JsonElement root, ReadOnlyMemory<byte> json, JsonDocumentOptions options)
    {
        var duplicates = false;
        if (ScanNames(root, ref duplicates))
        {
            return !duplicates;
        }

        try
        {
            using var strict = JsonDocument.Parse(json, options with { AllowDuplicateProperties = false });
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            // The parser's check throws this, not JsonException, for a name it cannot unescape (e.g. a lone
            // surrogate): such a document is refused like any other malformed one.
            return false;
        }
    }

    /// <summary>
    /// Looks at every member name in <paramref name="element"/>: false as soon as one has an escape (the caller then
    /// asks the parser, whose check unescapes names in document order and throws on some, e.g. a lone surrogate; a
    /// duplicate seen earlier must not pre-empt that), else true, with <paramref name="duplicates"/> set when an
    /// object repeats a name.
    /// </summary>
    private static bool ScanNames(JsonElement element, ref bool duplicates)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var count = element.GetPropertyCount();
                switch (count > 0 ? HasDuplicateNames(element, count) : false)
                {
                    case null:
                        return false;
                    case true:
                        duplicates = true;
                        break;
                }

                foreach (var property in element.EnumerateObject())
                {
                    if (!ScanNames(property.Value, ref duplicates))
                    {
                        return false;
                    }
                }

                return true;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                {
                    if (!ScanNames(item, ref duplicates))
                    {
                        return false;
                    }
                }

                return true;
            default:
                return true;
        }
    }

    /// <summary>
    /// Whether the object's <paramref name="count"/> member names (none of them escaped, else null) repeat. Each
    /// name's hash (randomly seeded per process, so collisions cannot be aimed) is paired with its position; after
    /// sorting, names whose hashes are equal are compared byte for byte.
    /// </summary>
    private static bool? HasDuplicateNames(JsonElement obj, int count)
    {
        long[]? rented = null;
        var keys = count <= 64 ? stackalloc long[count] : (rented = ArrayPool<long>.Shared.Rent(count)).AsSpan(0, count);
        try
        {
            var index = 0;
            foreach (var property in obj.EnumerateObject())
            {
                var name = JsonMarshal.GetRawUtf8PropertyName(property);
                if (name.Contains((byte)'\\'))
                {
                    return null;
                }

                var hash = new HashCode();
                hash.AddBytes(name);
                keys[index] = ((long)hash.ToHashCode() << 32) | (uint)index;
                index++;
            }

            keys.Sort();
            for (var run = 0; run < count;)
            {
                var end = run + 1;
                while (end < count && keys[end] >> 32 == keys[run] >> 32)
                {
                    end++;
                }

                // Equal hashes: compare every pair of the run (a run has one entry unless names repeat).
                for (var i = run; i < end; i++)
                {
                    for (var j = i + 1; j < end; j++)
                    {
                        if (RawName(obj, (int)keys[i]).SequenceEqual(RawName(obj, (int)keys[j])))
                        {
                            return true;
                        }
                    }
                }

                run = end;
            }

            return false;
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<long>.Shared.Return(rented);
            }
        }
    }

    private static ReadOnlySpan<byte> RawName(JsonElement obj, int index)
    {
        foreach (var property in obj.EnumerateObject())
        {
            if (index-- == 0)
            {
                return JsonMarshal.GetRawUtf8PropertyName(property);
            }
        }

        throw new InvalidOperationException("member index out of range");
    }

    /// <summary>
    /// The first of the header parameters that would point the broker at attacker-chosen keys (<c>jku</c>,
    /// <c>x5u</c>, <c>jwk</c>, <c>x5c</c>, in that order) the header carries, or null.
    /// </summary>
    private static string? ForbiddenHeader(JsonElement header)
    {
        if (header.TryGetProperty("jku"u8, out _))
        {
            return "jku";
        }

        if (header.TryGetProperty("x5u"u8, out _))
        {
            return "x5u";
        }

        if (header.TryGetProperty("jwk"u8, out _))
        {
            return "jwk";
        }

        return header.TryGetProperty("x5c"u8, out _) ? "x5c" : null;
    }

    private static bool ContainsIgnoringCase(IReadOnlyList<string> values, string value)
    {
        for (var i = 0; i < values.Count; i++)
        {
            if (string.Equals(values[i], value, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// True when arrays and objects in <paramref name="json"/> nest deeper than <paramref name="max"/> levels (the
    /// same count as <see cref="JsonDocumentOptions.MaxDepth"/>). A linear scan of the bytes that skips string
    /// contents (vectorised: it jumps from one structural byte to the next); it does not validate the JSON, the
    /// parser does that afterwards.
    /// </summary>
    internal static bool NestsDeeperThan(ReadOnlySpan<byte> json, int max)
    {
        var depth = 0;
        var i = 0;
        while (true)
        {
            var next = json[i..].IndexOfAny(Structural);
            if (next < 0)
            {
                return false;
            }

            i += next;
            switch (json[i++])
            {
                case (byte)'"':
                    // Skip the string: a backslash escapes the byte after it, a quote ends it.
                    while (true)
                    {
                        if (i >= json.Length)
                        {
                            return false;
                        }

                        var special = json[i..].IndexOfAny(StringSpecial);
                        if (special < 0)
                        {
                            return false;
                        }

                        i += special;
                        if (json[i] == (byte)'"')
                        {
                            i++;
                            break;
                        }

                        i += 2;
                    }

                    break;
                case (byte)'{' or (byte)'[':
                    if (++depth > max)
                    {
                        return true;
                    }

                    break;
                default:
                    depth--;
                    break;
            }

            if (i >= json.Length)
            {
                return false;
            }
        }
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
