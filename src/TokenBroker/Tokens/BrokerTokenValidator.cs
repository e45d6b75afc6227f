using System.Text.Json;
using System.Text.Json.Nodes;
using TokenBroker.Configuration;
using TokenBroker.Errors;
using TokenBroker.Signing;
using TokenBroker.State;

namespace TokenBroker.Tokens;

/// <summary>An access token this broker issued, verified and still registered.</summary>
internal sealed record VerifiedBrokerToken(
    string Jti,
    string Subject,
    string ClientId,
    IReadOnlyList<string> Audiences,
    IReadOnlyList<string> Scopes,
    DateTimeOffset ExpiresAt,
    JsonObject Claims,
    IssuedTokenRecord Record);

/// <summary>
/// Authenticates a token presented as <c>subject_token_type=...:access_token</c>: it must be an RFC 9068 access
/// token (<c>typ: at+jwt</c>) signed by one of this broker's published keys, with this broker's exact issuer, not
/// expired, and still in the issued-token registry (so revoked and unknown tokens are refused).
/// </summary>
internal sealed class BrokerTokenValidator(ResolvedSettings settings, SigningKeyRing keys, IStateStore state, TimeProvider time)
{
    private readonly JwtReadLimits _limits = new(settings.Limits.MaxTokenBytes, settings.Limits.MaxClaims, settings.Limits.MaxJsonDepth);
    private readonly HashSet<string> _algorithms = new(keys.Algorithms, StringComparer.Ordinal);

    public async ValueTask<BrokerTokenValidation> ValidateAsync(string token, CancellationToken cancel)
    {
        var read = JwtReader.Read(token, _algorithms, _limits, expectedType: "at+jwt");
        if (read.Token is null)
        {
            return BrokerTokenValidation.Fail(read.Error == BrokerErrors.TokenTooLarge ? read.Error : BrokerErrors.OwnTokenNotExchangeable, read.Detail!);
        }

        using var jwt = read.Token;
        var signer = keys.Published.FirstOrDefault(k => string.Equals(k.KeyId, jwt.KeyId, StringComparison.Ordinal));
        if (signer is null || signer.Algorithm != jwt.Algorithm || !Verify(signer, jwt))
        {
            return BrokerTokenValidation.Fail(BrokerErrors.OwnTokenNotExchangeable, "not signed by a key of this broker");
        }

        var p = jwt.Payload;
        if (!TryString(p, "iss", out var iss) || !string.Equals(iss, settings.Issuer, StringComparison.Ordinal))
        {
            return BrokerTokenValidation.Fail(BrokerErrors.OwnTokenNotExchangeable, "issuer is not this broker");
        }

        if (!TryString(p, "jti", out var jti) || !TryString(p, "sub", out var sub) || !TryString(p, "client_id", out var clientId) ||
            !p.TryGetProperty("exp", out var expElement) || !expElement.TryGetInt64(out var exp))
        {
            return BrokerTokenValidation.Fail(BrokerErrors.OwnTokenNotExchangeable, "registered claims of a broker token are missing");
        }

        var expiresAt = DateTimeOffset.FromUnixTimeSeconds(Math.Clamp(exp, 0, 253402300799));
        if (expiresAt <= time.GetUtcNow())
        {
            return BrokerTokenValidation.Fail(BrokerErrors.BrokerTokenInactive, $"broker token {jti} expired at {expiresAt:O}");
        }

        IssuedTokenRecord? record;
        try
        {
            record = await state.GetIssuedAsync(jti, cancel).ConfigureAwait(false);
        }
        catch (StateUnavailableException e)
        {
            return BrokerTokenValidation.Fail(BrokerErrors.StateUnavailable, e.Message);
        }

        if (record is null)
        {
            return BrokerTokenValidation.Fail(BrokerErrors.BrokerTokenInactive, $"broker token {jti} is not in the issued-token registry (revoked, expired or issued elsewhere)");
        }

        var audiences = p.TryGetProperty("aud", out var aud) && aud.ValueKind == JsonValueKind.Array
            ? aud.EnumerateArray().Where(a => a.ValueKind == JsonValueKind.String).Select(a => a.GetString()!).ToArray()
            : TryString(p, "aud", out var single) ? [single] : [];
        var scopes = TryString(p, "scope", out var scope) ? scope.Split(' ', StringSplitOptions.RemoveEmptyEntries) : [];
        var claims = JsonNode.Parse(p.GetRawText())!.AsObject();
        return BrokerTokenValidation.Success(new VerifiedBrokerToken(jti, sub, clientId, audiences, scopes, expiresAt, claims, record));
    }

    private static bool TryString(JsonElement payload, string name, out string value)
    {
        value = string.Empty;
        if (payload.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.String && e.GetString() is { Length: > 0 } s)
        {
            value = s;
            return true;
        }

        return false;
    }

    private static bool Verify(ITokenSigner signer, ParsedJwt jwt)
    {
        var key = signer.PublicKey;
        var factory = key.CryptoProviderFactory;
        var provider = factory.CreateForVerifying(key, jwt.Algorithm);
        try
        {
            return provider.Verify(jwt.SigningInput, jwt.Signature);
        }
        finally
        {
            factory.ReleaseSignatureProvider(provider);
        }
    }
}

internal readonly record struct BrokerTokenValidation(VerifiedBrokerToken? Token, BrokerError? Error, string? Detail)
{
    public static BrokerTokenValidation Success(VerifiedBrokerToken token) => new(token, null, null);

    public static BrokerTokenValidation Fail(BrokerError error, string detail) => new(null, error, detail);
}
