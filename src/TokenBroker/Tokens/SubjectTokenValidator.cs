using System.Text.Json;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Configuration;
using TokenBroker.Errors;
using TokenBroker.Providers;

namespace TokenBroker.Tokens;

/// <summary>A job token whose issuer, signature, audience and times have been verified.</summary>
internal sealed record VerifiedJobToken(ProviderKeySource Source, string Issuer, string Jti, string? Subject, DateTimeOffset ExpiresAt, JobTokenClaims Claims)
{
    public ResolvedProvider Provider => Source.Provider;
}

/// <summary>
/// Authenticates a subject token: exact issuer from the allow-list (no network for unknown issuers), a key from
/// that issuer's JWKS whose type and algorithm fit the header, the signature, exact single audience, times with
/// bounded leeway, a maximum lifetime, and a <c>jti</c>.
/// </summary>
internal sealed class SubjectTokenValidator(ProviderRegistry providers, ResolvedSettings settings, TimeProvider time)
{
    private const long MaxEpochSeconds = 253402300799; // 9999-12-31T23:59:59Z

    private readonly JwtReadLimits _limits = new(settings.Limits.MaxTokenBytes, settings.Limits.MaxClaims, settings.Limits.MaxJsonDepth);

    /// <summary>Validates inside a <c>validate</c> activity tagged with the provider and the refusal id (never the token).</summary>
    public async ValueTask<SubjectValidation> ValidateAsync(string token, CancellationToken cancel)
    {
        using var activity = Hosting.BrokerTracing.Source.StartActivity("validate");
        var result = await ValidateCoreAsync(token, cancel).ConfigureAwait(false);
        activity?.SetTag("tokenbroker.provider", result.Token?.Provider.Name);
        activity?.SetTag("tokenbroker.error_id", result.Error?.Id);
        return result;
    }

    private async ValueTask<SubjectValidation> ValidateCoreAsync(string token, CancellationToken cancel)
    {
        var read = JwtReader.Read(token, providers.AllAlgorithms, _limits);
        if (read.Token is null)
        {
            return SubjectValidation.Fail(read.Error!, read.Detail!);
        }

        using var jwt = read.Token;
        var payload = jwt.Payload;

        if (!payload.TryGetProperty("iss", out var issElement) || issElement.ValueKind != JsonValueKind.String)
        {
            return SubjectValidation.Fail(BrokerErrors.MissingClaim, "token has no string 'iss'");
        }

        var issuer = issElement.GetString()!;
        var source = providers.FindByIssuer(issuer);
        if (source is null)
        {
            return SubjectValidation.Fail(BrokerErrors.UnknownIssuer, $"issuer '{JwtReader.Printable(issuer)}' is not configured");
        }

        var provider = source.Provider;
        if (!provider.Algorithms.Contains(jwt.Algorithm))
        {
            return SubjectValidation.Fail(BrokerErrors.TokenAlgorithm, $"algorithm '{jwt.Algorithm}' is not allowed for provider '{provider.Name}'");
        }

        if (string.IsNullOrEmpty(jwt.KeyId))
        {
            return SubjectValidation.Fail(BrokerErrors.MissingKeyId, "header has no 'kid'");
        }

        // Claims are checked before the key lookup where that needs no network: a token that cannot pass anyway
        // must not be able to trigger a JWKS refresh.
        var claimCheck = CheckClaims(payload, provider, out var jti, out var expiresAt);
        if (claimCheck is not null)
        {
            return claimCheck.Value;
        }

        var lookup = await source.FindAsync(jwt.KeyId, cancel).ConfigureAwait(false);
        if (lookup.IsUnavailable)
        {
            return SubjectValidation.Fail(BrokerErrors.ProviderUnavailable, $"keys of provider '{provider.Name}' cannot be fetched: {lookup.Detail}");
        }

        if (lookup.Keys is null)
        {
            return SubjectValidation.Fail(BrokerErrors.UnknownKey, $"kid '{JwtReader.Printable(jwt.KeyId)}' is not in the JWKS of provider '{provider.Name}'{(lookup.Refreshed ? " (after a refresh)" : " (refresh rate-limited)")}");
        }

        var verified = false;
        foreach (var key in lookup.Keys)
        {
            if (KeyFits(key, jwt.Algorithm) && jwt.VerifySignature(key))
            {
                verified = true;
                break;
            }
        }

        if (!verified)
        {
            return SubjectValidation.Fail(BrokerErrors.BadSignature, $"signature does not verify with kid '{JwtReader.Printable(jwt.KeyId)}' of provider '{provider.Name}' ({jwt.Algorithm})");
        }

        var subject = payload.TryGetProperty("sub", out var sub) && sub.ValueKind == JsonValueKind.String ? sub.GetString() : null;
        return SubjectValidation.Success(new VerifiedJobToken(source, issuer, jti!, subject, expiresAt, new JobTokenClaims(payload)));
    }

    private SubjectValidation? CheckClaims(JsonElement payload, ResolvedProvider provider, out string? jti, out DateTimeOffset expiresAt)
    {
        jti = null;
        expiresAt = default;

        if (!payload.TryGetProperty("aud"u8, out var aud))
        {
            return SubjectValidation.Fail(BrokerErrors.WrongAudience, "token has no 'aud'");
        }

        string? audience = aud.ValueKind switch
        {
            JsonValueKind.String => aud.GetString(),
            JsonValueKind.Array when aud.GetArrayLength() == 1 && aud[0].ValueKind == JsonValueKind.String => aud[0].GetString(),
            _ => null,
        };
        if (audience is null)
        {
            return SubjectValidation.Fail(BrokerErrors.WrongAudience, "'aud' must be a single string; multi-valued audiences are refused");
        }

        if (!string.Equals(audience, provider.Audience, StringComparison.Ordinal))
        {
            return SubjectValidation.Fail(BrokerErrors.WrongAudience, $"'aud' is '{JwtReader.Printable(audience)}'; provider '{provider.Name}' requires '{provider.Audience}'");
        }

        var exp = ReadTime(payload, "exp", required: true, out var expError);
        var iat = ReadTime(payload, "iat", required: true, out var iatError);
        var nbf = ReadTime(payload, "nbf", required: false, out var nbfError);
        if ((expError ?? iatError ?? nbfError) is { } timeError)
        {
            return timeError;
        }

        var now = time.GetUtcNow().ToUnixTimeSeconds();
        var skew = (long)settings.Exchange.ClockSkew.TotalSeconds;
        if (exp!.Value + skew <= now)
        {
            return SubjectValidation.Fail(BrokerErrors.Expired, $"expired at {exp}, now {now}");
        }

        if (nbf is not null && nbf.Value - skew > now)
        {
            return SubjectValidation.Fail(BrokerErrors.NotYetValid, $"nbf {nbf} is in the future (now {now})");
        }

        if (iat!.Value - skew > now)
        {
            return SubjectValidation.Fail(BrokerErrors.IssuedInFuture, $"iat {iat} is in the future (now {now})");
        }

        if (exp.Value <= iat.Value || exp.Value - iat.Value > (long)provider.MaxTokenLifetime.TotalSeconds)
        {
            return SubjectValidation.Fail(BrokerErrors.LifetimeTooLong, $"lifetime exp-iat = {exp - iat}s; provider '{provider.Name}' allows at most {(long)provider.MaxTokenLifetime.TotalSeconds}s");
        }

        if (!payload.TryGetProperty("jti"u8, out var jtiElement) || jtiElement.ValueKind != JsonValueKind.String || jtiElement.GetString() is not { Length: > 0 and <= 256 } jtiValue)
        {
            return SubjectValidation.Fail(BrokerErrors.MissingClaim, "token has no 'jti' string of 1 to 256 characters");
        }

        jti = jtiValue;
        expiresAt = DateTimeOffset.FromUnixTimeSeconds(exp.Value);
        return null;
    }

    private static long? ReadTime(JsonElement payload, string name, bool required, out SubjectValidation? error)
    {
        error = null;
        if (!payload.TryGetProperty(name, out var element))
        {
            if (required)
            {
                error = SubjectValidation.Fail(BrokerErrors.MissingClaim, $"token has no '{name}'");
            }

            return null;
        }

        if (element.ValueKind != JsonValueKind.Number || !element.TryGetDouble(out var seconds) || !double.IsFinite(seconds) || seconds < 0 || seconds > MaxEpochSeconds)
        {
            error = SubjectValidation.Fail(BrokerErrors.ClaimType, $"'{name}' must be a number of seconds since the epoch");
            return null;
        }

        return (long)Math.Floor(seconds);
    }

    private static bool KeyFits(JsonWebKey key, string alg)
    {
        if (!string.IsNullOrEmpty(key.Alg) && !string.Equals(key.Alg, alg, StringComparison.Ordinal))
        {
            return false;
        }

        return alg[0] switch
        {
            // The RSA size (at least 2048 bits) is checked by JwkVerifier on the key it imported once; JsonWebKey.KeySize
            // would decode the modulus again on every request.
            'R' or 'P' => key.Kty == JsonWebAlgorithmsKeyTypes.RSA,
            'E' => key.Kty == JsonWebAlgorithmsKeyTypes.EllipticCurve && key.Crv == alg switch
            {
                "ES256" => JsonWebKeyECTypes.P256,
                "ES384" => JsonWebKeyECTypes.P384,
                _ => JsonWebKeyECTypes.P521,
            },
            _ => false,
        };
    }
}

internal readonly record struct SubjectValidation(VerifiedJobToken? Token, BrokerError? Error, string? Detail)
{
    public static SubjectValidation Success(VerifiedJobToken token) => new(token, null, null);

    public static SubjectValidation Fail(BrokerError error, string detail) => new(null, error, detail);
}
