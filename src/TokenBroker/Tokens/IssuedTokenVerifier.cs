using System.Text.Json;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Configuration;
using TokenBroker.Signing;

namespace TokenBroker.Tokens;

/// <summary>A token this broker issued, with a verified signature, issuer and lifetime.</summary>
internal sealed record VerifiedIssuedToken(string Jti, string Type, DateTimeOffset ExpiresAt, JsonElement Claims);

/// <summary>
/// Recognises the broker's own tokens for revocation and introspection: strict JWS reading with the size limits,
/// a <c>kid</c> from <see cref="SigningKeyRing"/>, the signature with that public key, <c>iss</c> equal to the
/// broker's issuer, <c>typ</c> <c>at+jwt</c> or <c>JWT</c>, and not expired (exact: no leeway, since the broker
/// wrote <c>exp</c> itself). Anything else is null: foreign, junk, tampered and expired tokens look alike.
/// </summary>
internal sealed class IssuedTokenVerifier(SigningKeyRing keys, ResolvedSettings settings, TimeProvider time)
{
    private readonly HashSet<string> _algorithms = new(keys.Algorithms, StringComparer.Ordinal);
    private readonly JwtReadLimits _limits = new(settings.Limits.MaxTokenBytes, settings.Limits.MaxClaims, settings.Limits.MaxJsonDepth);

    public VerifiedIssuedToken? Verify(string token)
    {
        var read = JwtReader.Read(token, _algorithms, _limits, JwtReader.BrokerTokenTypes);
        if (read.Token is null)
        {
            return null;
        }

        using var jwt = read.Token;
        var signer = keys.Published.FirstOrDefault(k => string.Equals(k.KeyId, jwt.KeyId, StringComparison.Ordinal));
        if (signer is null || !string.Equals(signer.Algorithm, jwt.Algorithm, StringComparison.Ordinal))
        {
            return null;
        }

        var type = jwt.Header.TryGetProperty("typ", out var typ) && typ.ValueKind == JsonValueKind.String ? typ.GetString() : null;
        if (type is not ("at+jwt" or "JWT"))
        {
            return null;
        }

        if (!jwt.VerifySignature(signer.PublicKey))
        {
            return null;
        }

        var payload = jwt.Payload;
        if (!payload.TryGetProperty("iss", out var iss) || iss.ValueKind != JsonValueKind.String || !string.Equals(iss.GetString(), settings.Issuer, StringComparison.Ordinal))
        {
            return null;
        }

        if (!payload.TryGetProperty("exp", out var exp) || !exp.TryGetInt64(out var expSeconds) || expSeconds <= time.GetUtcNow().ToUnixTimeSeconds())
        {
            return null;
        }

        if (!payload.TryGetProperty("jti", out var jti) || jti.ValueKind != JsonValueKind.String || jti.GetString() is not { Length: > 0 } jtiValue)
        {
            return null;
        }

        return new VerifiedIssuedToken(jtiValue, type, DateTimeOffset.FromUnixTimeSeconds(expSeconds), payload.Clone());
    }
}
