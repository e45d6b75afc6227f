using System.Buffers;
using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Tokens;

namespace TokenBroker.Signing;

/// <summary>The claims of one token to issue, before signing.</summary>
internal sealed record MintRequest
{
    public required string Issuer { get; init; }
    public required string Subject { get; init; }
    public required IReadOnlyList<string> Audiences { get; init; }
    public required DateTimeOffset IssuedAt { get; init; }
    public required DateTimeOffset ExpiresAt { get; init; }
    public required string Jti { get; init; }
    public required string ClientId { get; init; }
    public required IReadOnlyList<string> Scopes { get; init; }

    /// <summary><c>at+jwt</c> (RFC 9068 access token) or <c>JWT</c> (plain JWT for cloud federation).</summary>
    public required string Type { get; init; }

    /// <summary>The mapped job context (repo, repo_id, ref, branch, environment, stage, provider, rule, run_id) in order.</summary>
    public required IReadOnlyList<KeyValuePair<string, string>> Context { get; init; }

    /// <summary>Extra claims rendered from the rule's <c>claims</c>.</summary>
    public required IReadOnlyList<KeyValuePair<string, ClaimValue>> Extra { get; init; }
}

/// <summary>
/// Serialises a <see cref="MintRequest"/> to a compact JWS and signs it with the active key. Claims are written
/// explicitly; nothing is copied wholesale from the job token.
/// </summary>
internal static class TokenMinter
{
    // JWTs are not embedded in HTML; the relaxed encoder keeps e.g. "at+jwt" and URLs byte-readable for verifiers.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A new 128-bit random token id.</summary>
    public static string NewJti() => TokenBroker.Security.RandomIds.NewBase64Url(16);

    public static string Mint(MintRequest request, ITokenSigner signer)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            w.WriteString("alg", signer.Algorithm);
            w.WriteString("kid", signer.KeyId);
            w.WriteString("typ", request.Type);
            w.WriteEndObject();
        }

        var header = Base64Url.Encode(buffer.WrittenSpan);
        buffer.Clear();
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            WritePayload(w, request);
        }

        var payload = Base64Url.Encode(buffer.WrittenSpan);
        var signingInput = System.Text.Encoding.ASCII.GetBytes(header + "." + payload);
        var signature = signer.Sign(signingInput);
        return header + "." + payload + "." + Base64Url.Encode(signature);
    }

    /// <summary>Writes the token's claims, in the documented order. <c>rules explain</c> and <c>rules test</c> show the same.</summary>
    public static void WritePayload(Utf8JsonWriter w, MintRequest request)
    {
        w.WriteStartObject();
        w.WriteString("iss", request.Issuer);
        w.WriteString("sub", request.Subject);
        if (request.Audiences.Count == 1)
        {
            w.WriteString("aud", request.Audiences[0]);
        }
        else
        {
            w.WriteStartArray("aud");
            foreach (var aud in request.Audiences)
            {
                w.WriteStringValue(aud);
            }

            w.WriteEndArray();
        }

        w.WriteNumber("exp", request.ExpiresAt.ToUnixTimeSeconds());
        w.WriteNumber("iat", request.IssuedAt.ToUnixTimeSeconds());
        w.WriteNumber("nbf", request.IssuedAt.ToUnixTimeSeconds());
        w.WriteString("jti", request.Jti);
        w.WriteString("client_id", request.ClientId);
        if (request.Scopes.Count > 0)
        {
            w.WriteString("scope", string.Join(' ', request.Scopes));
        }

        foreach (var (name, value) in request.Context)
        {
            w.WriteString(name, value);
        }

        foreach (var (name, value) in request.Extra)
        {
            w.WritePropertyName(name);
            Write(w, value);
        }

        w.WriteEndObject();
    }

    /// <summary>The claims of a token as compact JSON, unsigned.</summary>
    public static string PayloadJson(MintRequest request, bool indented = false)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions with { Indented = indented }))
        {
            WritePayload(w, request);
        }

        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void Write(Utf8JsonWriter w, ClaimValue value)
    {
        switch (value)
        {
            case ClaimValue.Text t:
                w.WriteStringValue(t.Value);
                break;
            case ClaimValue.List l:
                w.WriteStartArray();
                foreach (var item in l.Items)
                {
                    Write(w, item);
                }

                w.WriteEndArray();
                break;
            case ClaimValue.Map m:
                w.WriteStartObject();
                foreach (var (k, v) in m.Entries)
                {
                    w.WritePropertyName(k);
                    Write(w, v);
                }

                w.WriteEndObject();
                break;
        }
    }
}
