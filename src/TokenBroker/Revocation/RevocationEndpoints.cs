using System.Text.Json;
using TokenBroker.Audit;
using TokenBroker.Configuration;
using TokenBroker.Errors;
using TokenBroker.Exchange;
using TokenBroker.Hosting;
using TokenBroker.RateLimiting;
using TokenBroker.Security;
using TokenBroker.State;
using TokenBroker.Tokens;

namespace TokenBroker.Revocation;

/// <summary>The credentials that may introspect (a distinct type so DI cannot mix up the scopes).</summary>
internal sealed class IntrospectionCredentials(CredentialSet set)
{
    public CredentialSet Set { get; } = set;
}

/// <summary>
/// <c>POST /revoke</c> (RFC 7009) and <c>POST /introspect</c> (RFC 7662). Both read a bounded form with a
/// <c>token</c> parameter and recognise only tokens this broker issued (<see cref="IssuedTokenVerifier"/>).
/// </summary>
internal static partial class RevocationEndpoints
{
    public static void MapRevocationEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/revoke", RevokeAsync).DisableAntiforgery().LimitPerClient("Revoke", "revoke");
        app.MapPost("/introspect", IntrospectAsync).DisableAntiforgery().LimitPerClient("Introspect", "introspect");
    }

    /// <summary>
    /// A job revokes its own token by presenting it. 200 for every well-formed request, whether or not the token
    /// was known (RFC 7009 section 2.2), so the answer reveals nothing; 503 when the store cannot record it.
    /// </summary>
    private static async Task RevokeAsync(HttpContext http, IssuedTokenVerifier verifier, IStateStore state, IAuditSink auditSink, ResolvedSettings settings, TimeProvider time)
    {
        var audit = new AuditEvent { Type = "revoke", RequestId = http.TraceIdentifier, Time = time.GetUtcNow(), ClientIp = http.Connection.RemoteIpAddress?.ToString() };
        var started = time.GetTimestamp();
        try
        {
            var (token, error) = await ReadTokenAsync(http, settings).ConfigureAwait(false);
            if (token is null)
            {
                Refused(audit, error!, null);
                await TokenEndpoints.WriteErrorAsync(http, error!, settings.Exchange.RetryAfterSeconds).ConfigureAwait(false);
                return;
            }

            audit.TokenSha256 = AuditEvent.Hash(token);
            var verified = verifier.Verify(token);
            if (verified is null)
            {
                audit.Outcome = "ignored";
                audit.Detail = "not a current token of this broker";
            }
            else
            {
                audit.IssuedJti = verified.Jti;
                try
                {
                    var known = await state.RevokeAsync(verified.Jti, time.GetUtcNow(), http.RequestAborted).ConfigureAwait(false);
                    audit.Outcome = known ? "revoked" : "ignored";
                    audit.Detail = known ? null : "no record of this token (expired or unknown)";
                }
                catch (StateUnavailableException e)
                {
                    Refused(audit, BrokerErrors.StateUnavailable, e.Message);
                    await TokenEndpoints.WriteErrorAsync(http, BrokerErrors.StateUnavailable, settings.Exchange.RetryAfterSeconds).ConfigureAwait(false);
                    return;
                }
            }

            TokenEndpoints.NoStore(http.Response);
            http.Response.StatusCode = StatusCodes.Status200OK;
        }
        finally
        {
            audit.LatencyMs = Math.Round(time.GetElapsedTime(started).TotalMilliseconds, 3);
            auditSink.Write(audit);
        }
    }

    /// <summary>
    /// Authenticated introspection. Active tokens get the standard fields; expired, revoked, blocked, foreign and
    /// junk tokens get exactly <c>{"active":false}</c>. When the state store or the block list cannot be trusted
    /// the answer is 503, never <c>active: true</c>.
    /// </summary>
    private static async Task IntrospectAsync(HttpContext http, IntrospectionCredentials credentials, IssuedTokenVerifier verifier, IStateStore state, BlockCache blocks, IAuditSink auditSink, ResolvedSettings settings, TimeProvider time)
    {
        var audit = new AuditEvent { Type = "introspect", RequestId = http.TraceIdentifier, Time = time.GetUtcNow(), ClientIp = http.Connection.RemoteIpAddress?.ToString() };
        var started = time.GetTimestamp();
        try
        {
            await IntrospectCoreAsync(http, credentials, verifier, state, blocks, settings, audit).ConfigureAwait(false);
        }
        finally
        {
            audit.LatencyMs = Math.Round(time.GetElapsedTime(started).TotalMilliseconds, 3);
            auditSink.Write(audit);
        }
    }

    private static async Task IntrospectCoreAsync(HttpContext http, IntrospectionCredentials credentials, IssuedTokenVerifier verifier, IStateStore state, BlockCache blocks, ResolvedSettings settings, AuditEvent audit)
    {
        audit.Actor = credentials.Set.Authenticate(http.Request);
        if (audit.Actor is null)
        {
            Refused(audit, BrokerErrors.Unauthenticated, "no valid introspection credential");
            http.Response.Headers.WWWAuthenticate = credentials.Set.Challenge;
            await TokenEndpoints.WriteErrorAsync(http, BrokerErrors.Unauthenticated, settings.Exchange.RetryAfterSeconds).ConfigureAwait(false);
            return;
        }

        var (token, error) = await ReadTokenAsync(http, settings).ConfigureAwait(false);
        if (token is null)
        {
            Refused(audit, error!, null);
            await TokenEndpoints.WriteErrorAsync(http, error!, settings.Exchange.RetryAfterSeconds).ConfigureAwait(false);
            return;
        }

        audit.TokenSha256 = AuditEvent.Hash(token);
        var verified = verifier.Verify(token);
        if (verified is null)
        {
            await WriteInactiveAsync(http, audit, "not a current token of this broker").ConfigureAwait(false);
            return;
        }

        audit.IssuedJti = verified.Jti;
        IssuedTokenRecord? record;
        try
        {
            record = await state.GetIssuedAsync(verified.Jti, http.RequestAborted).ConfigureAwait(false);
        }
        catch (StateUnavailableException e)
        {
            Refused(audit, BrokerErrors.StateUnavailable, e.Message);
            await TokenEndpoints.WriteErrorAsync(http, BrokerErrors.StateUnavailable, settings.Exchange.RetryAfterSeconds).ConfigureAwait(false);
            return;
        }

        if (record is not null)
        {
            audit.Provider = record.Provider;
            audit.Rule = record.Rule;
            audit.RepositoryId = record.RepositoryId;
            audit.RunId = record.RunId;
        }

        if (record is null || record.RevokedAt is not null)
        {
            await WriteInactiveAsync(http, audit, record is null ? "no record of this token (expired or unknown)" : "revoked").ConfigureAwait(false);
            return;
        }

        if (!blocks.IsFresh)
        {
            Refused(audit, BrokerErrors.StateUnavailable, "the block list could not be re-read recently");
            await TokenEndpoints.WriteErrorAsync(http, BrokerErrors.StateUnavailable, settings.Exchange.RetryAfterSeconds).ConfigureAwait(false);
            return;
        }

        if (blocks.Current.FindMatch(record) is { } block)
        {
            await WriteInactiveAsync(http, audit, $"blocked by operator block '{block.Id}'").ConfigureAwait(false);
            return;
        }

        audit.Outcome = "active";
        await WriteActiveAsync(http, verified).ConfigureAwait(false);
    }

    private static async Task<(string? Token, BrokerError? Error)> ReadTokenAsync(HttpContext http, ResolvedSettings settings)
    {
        var limits = settings.Limits;
        if (http.Request.QueryString.HasValue)
        {
            return (null, BrokerErrors.QueryParameters);
        }

        if (!RequestBody.HasMediaType(http.Request, "application/x-www-form-urlencoded"))
        {
            return (null, BrokerErrors.NotFormEncoded);
        }

        // A token plus a hint fit in MaxTokenBytes + 4 KiB; nothing larger is read, let alone parsed.
        var body = await RequestBody.ReadAsync(http.Request, Math.Min(limits.MaxRequestBodyBytes, limits.MaxTokenBytes + 4096), http.RequestAborted).ConfigureAwait(false);
        if (body is null)
        {
            return (null, BrokerErrors.BodyTooLarge);
        }

        var fields = FormBody.Parse(body, 8, out var tooMany);
        if (fields is null)
        {
            return (null, tooMany ? BrokerErrors.FormLimits : BrokerErrors.MalformedForm);
        }

        string? token = null;
        foreach (var (name, value) in fields)
        {
            if (name == "token")
            {
                if (token is not null)
                {
                    return (null, BrokerErrors.RepeatedParameter);
                }

                token = value;
            }
            else if (value.Length > limits.MaxParameterLength)
            {
                return (null, BrokerErrors.FormLimits);
            }
        }

        if (string.IsNullOrEmpty(token) || token.Length > limits.MaxTokenBytes)
        {
            return (null, BrokerErrors.TokenParameterMissing);
        }

        return (token, null);
    }

    private static void Refused(AuditEvent audit, BrokerError error, string? detail)
    {
        audit.Outcome = "refused";
        audit.ErrorId = error.Id;
        audit.ErrorCode = error.Code;
        audit.Detail = detail;
    }

    private static async Task WriteInactiveAsync(HttpContext http, AuditEvent audit, string detail)
    {
        audit.Outcome = "inactive";
        audit.Detail = detail;
        TokenEndpoints.NoStore(http.Response);
        http.Response.ContentType = "application/json";
        await http.Response.Body.WriteAsync("{\"active\":false}"u8.ToArray()).ConfigureAwait(false);
    }

    private static async Task WriteActiveAsync(HttpContext http, VerifiedIssuedToken token)
    {
        TokenEndpoints.NoStore(http.Response);
        http.Response.ContentType = "application/json";
        await using var w = new Utf8JsonWriter(http.Response.Body);
        w.WriteStartObject();
        w.WriteBoolean("active", true);
        foreach (var name in (string[])["scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti"])
        {
            if (token.Claims.TryGetProperty(name, out var value))
            {
                w.WritePropertyName(name);
                value.WriteTo(w);
            }
        }

        w.WriteString("token_type", token.Type == "at+jwt" ? "Bearer" : "N_A");
        w.WriteEndObject();
        await w.FlushAsync().ConfigureAwait(false);
    }
}
