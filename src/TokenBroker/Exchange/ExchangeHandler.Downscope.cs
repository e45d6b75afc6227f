using System.Text.Json.Nodes;
using TokenBroker.Audit;
using TokenBroker.Errors;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Signing;
using TokenBroker.State;

namespace TokenBroker.Exchange;

/// <summary>
/// Downscoping (multi-step pipelines): an access token this broker issued is exchanged for a narrower one. The new
/// token has a subset of the presented token's audiences (and only audiences its rule lists under
/// <c>downscope_audiences</c>), a subset of its scopes, and no more than its remaining lifetime; the chain is
/// recorded in a nested <c>act</c> claim (RFC 8693 section 4.1). It is never broader.
/// </summary>
internal sealed partial class ExchangeHandler
{
    private static readonly HashSet<string> RegisteredClaims = new(StringComparer.Ordinal)
    {
        "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "act",
    };

    private static readonly string[] ContextClaims = ["repo", "repo_id", "ref", "branch", "environment", "run_id", "stage", "provider", "rule"];

    private async Task<ExchangeOutcome> DownscopeAsync(ExchangeRequest request, AuditEvent audit, CancellationToken cancel)
    {
        var validation = await brokerTokens.ValidateAsync(request.SubjectToken, cancel).ConfigureAwait(false);
        if (validation.Token is not { } parent)
        {
            return Refuse(audit, validation.Error!, validation.Detail);
        }

        audit.ParentJti = parent.Jti;
        audit.Provider = parent.Record.Provider;
        audit.RepositoryId = parent.Record.RepositoryId;
        audit.RunId = parent.Record.RunId;
        audit.Rule = parent.Record.Rule;

        var rule = rules.Current?.Rules.FirstOrDefault(r => string.Equals(r.Id, parent.Record.Rule, StringComparison.Ordinal));
        if (rule is null)
        {
            return Refuse(audit, BrokerErrors.DownscopeNotAllowed, $"rule '{parent.Record.Rule}' that issued the token is no longer in force");
        }

        if (request.Audiences.Count == 0)
        {
            return Refuse(audit, BrokerErrors.AudienceRequired, "a downscoping request must name its audiences");
        }

        foreach (var audience in request.Audiences)
        {
            if (!parent.Audiences.Contains(audience, StringComparer.Ordinal))
            {
                return Refuse(audit, BrokerErrors.DownscopeNotAllowed, $"audience '{audience}' is not in the presented token (it has [{string.Join(", ", parent.Audiences)}])");
            }

            if (!rule.Grant.DownscopeAudiences.Contains(audience, StringComparer.Ordinal))
            {
                return Refuse(audit, BrokerErrors.DownscopeNotAllowed, $"rule '{rule.Id}' does not list '{audience}' under downscope_audiences");
            }
        }

        var scopes = request.Scopes ?? parent.Scopes;
        foreach (var scope in scopes)
        {
            if (!parent.Scopes.Contains(scope, StringComparer.Ordinal))
            {
                return Refuse(audit, BrokerErrors.DownscopeWidens, $"scope '{scope}' is not in the presented token (it has [{string.Join(", ", parent.Scopes)}])");
            }
        }

        var now = DateTimeOffset.FromUnixTimeSeconds(time.GetUtcNow().ToUnixTimeSeconds());
        var lifetime = parent.ExpiresAt - now;
        if (request.RequestedLifetime is { } asked && asked < lifetime)
        {
            lifetime = asked;
        }

        if (lifetime < TimeSpan.FromSeconds(1))
        {
            return Refuse(audit, BrokerErrors.BrokerTokenInactive, "the presented token has less than a second to live");
        }

        var context = new List<KeyValuePair<string, string>>();
        foreach (var name in ContextClaims)
        {
            if (parent.Claims[name] is JsonValue v && v.TryGetValue<string>(out var text))
            {
                context.Add(new(name, text));
            }
        }

        var extra = new List<KeyValuePair<string, ClaimValue>>();
        foreach (var (name, node) in parent.Claims)
        {
            if (!RegisteredClaims.Contains(name) && Array.IndexOf(ContextClaims, name) < 0 && ToClaimValue(node) is { } value)
            {
                extra.Add(new(name, value));
            }
        }

        var act = new List<KeyValuePair<string, ClaimValue>>
        {
            new("sub", new ClaimValue.Text(parent.Subject)),
            new("client_id", new ClaimValue.Text(parent.ClientId)),
            new("jti", new ClaimValue.Text(parent.Jti)),
        };
        if (parent.Claims["act"] is { } previous && ToClaimValue(previous) is { } previousAct)
        {
            act.Add(new("act", previousAct));
        }

        extra.Add(new("act", new ClaimValue.Map(act)));

        var mint = new MintRequest
        {
            Issuer = settings.Issuer,
            Subject = parent.Subject,
            Audiences = request.Audiences,
            IssuedAt = now,
            ExpiresAt = now + lifetime,
            // The shard tag of the parent keeps the record findable from the jti alone (see StateKeys.ShardTag).
            Jti = (StateKeys.HasShardTag(parent.Jti) ? parent.Jti[..StateKeys.ShardTagLength] : TokenBroker.Security.RandomIds.NewHex(2)) + TokenMinter.NewJti(),
            ClientId = parent.ClientId,
            Scopes = scopes.Distinct(StringComparer.Ordinal).ToArray(),
            Type = request.RequestedTokenType == TokenTypes.Jwt ? "JWT" : "at+jwt",
            Context = context,
            Extra = extra,
        };

        if (keys.AlgorithmFor(mint.Audiences) is not { } algorithm)
        {
            return Refuse(audit, BrokerErrors.AlgorithmConflict, $"audiences {string.Join(", ", mint.Audiences)} are configured for different signing algorithms");
        }

        string token;
        try
        {
            token = TokenMinter.Mint(mint, keys.ActiveFor(algorithm));
        }
        catch (SigningUnavailableException e)
        {
            return Refuse(audit, BrokerErrors.SigningUnavailable, e.Message);
        }

        try
        {
            await state.RecordIssuedAsync(parent.Record with { Jti = mint.Jti, IssuedAt = now, ExpiresAt = mint.ExpiresAt }, cancel).ConfigureAwait(false);
        }
        catch (StateUnavailableException e)
        {
            // Not recorded means not revocable or introspectable: do not hand it out.
            return Refuse(audit, BrokerErrors.StateUnavailable, e.Message);
        }

        return Issued(request, audit, mint, token, lifetime);
    }

    /// <summary>Broker tokens carry strings, lists and maps only (see TokenMinter); anything else is not copied.</summary>
    private static ClaimValue? ToClaimValue(JsonNode? node) => node switch
    {
        JsonValue v when v.TryGetValue<string>(out var s) => new ClaimValue.Text(s),
        JsonArray a => new ClaimValue.List(a.Select(ToClaimValue).OfType<ClaimValue>().ToArray()),
        JsonObject o => new ClaimValue.Map(o.Select(kv => (kv.Key, Value: ToClaimValue(kv.Value)))
            .Where(kv => kv.Value is not null)
            .Select(kv => new KeyValuePair<string, ClaimValue>(kv.Key, kv.Value!)).ToArray()),
        _ => null,
    };
}
