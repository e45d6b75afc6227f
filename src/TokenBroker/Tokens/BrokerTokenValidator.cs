using System.Text.Json;
using System.Text.Json.Nodes;
using TokenBroker.Errors;
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
/// Authenticates a token presented as <c>subject_token_type=...:access_token</c> for downscoping: one of this
/// broker's own tokens (<see cref="IssuedTokenVerifier"/>: its keys, its issuer, unexpired) that is an RFC 9068
/// access token (<c>typ: at+jwt</c>), still in the issued-token registry, not revoked and not blocked.
/// </summary>
internal sealed class BrokerTokenValidator(IssuedTokenVerifier verifier, IStateStore state, BlockCache blocks)
{
    /// <summary>Validates inside a <c>validate</c> activity tagged with the refusal id (never the token).</summary>
    public async ValueTask<BrokerTokenValidation> ValidateAsync(string token, CancellationToken cancel)
    {
        using var activity = Hosting.BrokerTracing.Source.StartActivity("validate");
        activity?.SetTag("tokenbroker.subject_token_type", "broker");
        var result = await ValidateCoreAsync(token, cancel).ConfigureAwait(false);
        activity?.SetTag("tokenbroker.error_id", result.Error?.Id);
        return result;
    }

    private async ValueTask<BrokerTokenValidation> ValidateCoreAsync(string token, CancellationToken cancel)
    {
        if (verifier.Verify(token) is not { } verified)
        {
            return BrokerTokenValidation.Fail(BrokerErrors.OwnTokenNotExchangeable, "not an unexpired token signed by this broker's keys with its issuer");
        }

        if (verified.Type != "at+jwt")
        {
            return BrokerTokenValidation.Fail(BrokerErrors.OwnTokenNotExchangeable, $"typ '{verified.Type}': only access tokens (at+jwt) can be downscoped");
        }

        var p = verified.Claims;
        if (!TryString(p, "sub", out var sub) || !TryString(p, "client_id", out var clientId))
        {
            return BrokerTokenValidation.Fail(BrokerErrors.OwnTokenNotExchangeable, "registered claims of a broker token are missing");
        }

        IssuedTokenRecord? record;
        try
        {
            record = await state.GetIssuedAsync(verified.Jti, cancel).ConfigureAwait(false);
        }
        catch (StateUnavailableException e)
        {
            return BrokerTokenValidation.Fail(BrokerErrors.StateUnavailable, e.Message);
        }

        if (record is null || record.RevokedAt is not null)
        {
            return BrokerTokenValidation.Fail(BrokerErrors.BrokerTokenInactive, $"broker token {verified.Jti} is {(record is null ? "not in the issued-token registry" : "revoked")}");
        }

        if (!blocks.IsFresh)
        {
            return BrokerTokenValidation.Fail(BrokerErrors.StateUnavailable, "the block list could not be re-read recently");
        }

        if (blocks.Current.FindMatch(record.Provider, record.RepositoryId, record.OwnerId, record.Rule, record.RunId, record.IssuedAt) is { } block)
        {
            return BrokerTokenValidation.Fail(BrokerErrors.Blocked, $"the presented token is blocked by operator block '{block.Id}'");
        }

        var audiences = p.TryGetProperty("aud", out var aud) && aud.ValueKind == JsonValueKind.Array
            ? aud.EnumerateArray().Where(a => a.ValueKind == JsonValueKind.String).Select(a => a.GetString()!).ToArray()
            : TryString(p, "aud", out var single) ? [single] : [];
        var scopes = TryString(p, "scope", out var scope) ? scope.Split(' ', StringSplitOptions.RemoveEmptyEntries) : [];
        var claims = JsonNode.Parse(p.GetRawText())!.AsObject();
        return BrokerTokenValidation.Success(new VerifiedBrokerToken(verified.Jti, sub, clientId, audiences, scopes, verified.ExpiresAt, claims, record));
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
}

internal readonly record struct BrokerTokenValidation(VerifiedBrokerToken? Token, BrokerError? Error, string? Detail)
{
    public static BrokerTokenValidation Success(VerifiedBrokerToken token) => new(token, null, null);

    public static BrokerTokenValidation Fail(BrokerError error, string detail) => new(null, error, detail);
}
