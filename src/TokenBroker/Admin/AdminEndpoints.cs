using System.Security.Cryptography;
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

namespace TokenBroker.Admin;

/// <summary>The credentials that may use the admin API (a distinct type so DI cannot mix up the scopes).</summary>
internal sealed class AdminCredentials(CredentialSet set)
{
    public CredentialSet Set { get; } = set;
}

/// <summary>
/// The admin API under <c>/admin</c>: revoke an issued token by <c>jti</c>; create, list and delete blocks.
/// JSON in and out, authenticated with an admin credential, every call audited (also refused ones). Changes reach
/// every replica through the state store's notifications; this replica re-reads at once.
/// </summary>
internal static class AdminEndpoints
{
    private const int MaxBodyBytes = 8 * 1024;
    private const int MaxValueLength = 256;
    private const int MaxBlocks = 1000;

    private static readonly string[] SelectorFields = ["provider", "repository_id", "owner_id", "rule_id", "run_id"];

    public static void MapAdminEndpoints(this IEndpointRouteBuilder app)
    {
        var admin = app.MapGroup("/admin").DisableAntiforgery().LimitPerClient("Admin", "admin");
        admin.MapPost("/revoke", (HttpContext http, AdminContext c) => c.RunAsync(http, "admin.revoke", RevokeAsync));
        admin.MapPost("/blocks", (HttpContext http, AdminContext c) => c.RunAsync(http, "admin.block.create", CreateBlockAsync));
        admin.MapGet("/blocks", (HttpContext http, AdminContext c) => c.RunAsync(http, "admin.block.list", ListBlocksAsync));
        admin.MapDelete("/blocks/{id}", (HttpContext http, AdminContext c) => c.RunAsync(http, "admin.block.delete", DeleteBlockAsync));
        admin.MapPost("/rules/reload", (HttpContext http, AdminContext c) => c.RunAsync(http, "admin.rules.reload", ReloadRulesAsync));
    }

    /// <summary>
    /// Reloads this replica's rules now (as a file change or SIGHUP would). 200 with the new version, or 422 with
    /// every error when the new rules are bad, in which case the last good rules stay in force.
    /// </summary>
    private static Task<AdminResult> ReloadRulesAsync(HttpContext http, AdminContext c, AuditEvent audit)
    {
        var reloader = http.RequestServices.GetRequiredService<TokenBroker.Rules.RuleReloader>();
        var before = reloader.Status.Version;
        var status = reloader.Reload("admin");
        var failed = status.Version == before;
        audit.Detail = failed ? $"reload failed, version {status.Version} stays: {string.Join(" | ", status.LastFailure)}" : $"rules version {status.Version}, {status.RuleCount} rules";
        return Task.FromResult(AdminResult.Json(failed ? StatusCodes.Status422UnprocessableEntity : StatusCodes.Status200OK, w =>
        {
            w.WriteString("outcome", failed ? "failed" : "reloaded");
            w.WriteNumber("version", status.Version);
            w.WriteNumber("rule_count", status.RuleCount);
            if (failed)
            {
                w.WriteStartArray("errors");
                foreach (var e in status.LastFailure)
                {
                    w.WriteStringValue(e);
                }

                w.WriteEndArray();
            }
        }));
    }

    private static async Task<AdminResult> RevokeAsync(HttpContext http, AdminContext c, AuditEvent audit)
    {
        var (body, error) = await ReadJsonAsync(http).ConfigureAwait(false);
        if (body is null)
        {
            return AdminResult.Fail(error!, "body");
        }

        using (body)
        {
            var root = body.RootElement;
            if (Unknown(root, "jti") is { } unknown)
            {
                return AdminResult.Fail(BrokerErrors.AdminBodyInvalid, $"unknown property '{JwtReader.Printable(unknown)}'");
            }

            if (!TryString(root, "jti", required: true, out var jti) || jti is null)
            {
                return AdminResult.Fail(BrokerErrors.AdminBodyInvalid, "jti must be a string of 1 to 256 printable characters");
            }

            audit.IssuedJti = jti;
            var known = await c.State.RevokeAsync(jti, c.Time.GetUtcNow(), http.RequestAborted).ConfigureAwait(false);
            if (!known)
            {
                return AdminResult.Fail(BrokerErrors.AdminNotFound, "no current issued token has this jti");
            }

            return AdminResult.Json(StatusCodes.Status200OK, w =>
            {
                w.WriteString("jti", jti);
                w.WriteBoolean("revoked", true);
            });
        }
    }

    private static async Task<AdminResult> CreateBlockAsync(HttpContext http, AdminContext c, AuditEvent audit)
    {
        var (body, error) = await ReadJsonAsync(http).ConfigureAwait(false);
        if (body is null)
        {
            return AdminResult.Fail(error!, "body");
        }

        BlockSelector selector;
        string? reason;
        using (body)
        {
            var root = body.RootElement;
            if (Unknown(root, [.. SelectorFields, "issued_before", "reason"]) is { } unknown)
            {
                return AdminResult.Fail(BrokerErrors.AdminBodyInvalid, $"unknown property '{JwtReader.Printable(unknown)}'");
            }

            var values = new Dictionary<string, string?>(StringComparer.Ordinal);
            foreach (var field in SelectorFields)
            {
                if (!TryString(root, field, required: false, out var value))
                {
                    return AdminResult.Fail(BrokerErrors.AdminSelectorInvalid, $"{field} must be a string of 1 to {MaxValueLength} printable characters");
                }

                values[field] = value;
            }

            DateTimeOffset? issuedBefore = null;
            if (root.TryGetProperty("issued_before", out var before))
            {
                if (before.ValueKind != JsonValueKind.String || !before.TryGetDateTimeOffset(out var parsed))
                {
                    return AdminResult.Fail(BrokerErrors.AdminSelectorInvalid, "issued_before must be an RFC 3339 date-time string, e.g. 2026-11-22T03:00:00Z");
                }

                issuedBefore = parsed.ToUniversalTime();
            }

            if (!TryString(root, "reason", required: false, out reason, maxLength: 512))
            {
                return AdminResult.Fail(BrokerErrors.AdminBodyInvalid, "reason must be a string of at most 512 printable characters");
            }

            selector = new BlockSelector
            {
                Provider = values["provider"],
                RepositoryId = values["repository_id"],
                OwnerId = values["owner_id"],
                RuleId = values["rule_id"],
                RunId = values["run_id"],
                IssuedBefore = issuedBefore,
            };
        }

        audit.Selector = selector;
        if (selector.IsEmpty)
        {
            return AdminResult.Fail(BrokerErrors.AdminSelectorInvalid, "a block needs at least one of provider, repository_id, owner_id, rule_id, run_id");
        }

        if (c.Blocks.Current.Blocks.Count >= MaxBlocks)
        {
            return AdminResult.Fail(BrokerErrors.AdminSelectorInvalid, $"there are already {MaxBlocks} blocks; delete some first");
        }

        var block = new Block
        {
            Id = "blk_" + Base64Url.Encode(RandomNumberGenerator.GetBytes(9)),
            Selector = selector,
            CreatedAt = c.Time.GetUtcNow(),
            CreatedBy = audit.Actor!,
            Reason = reason,
        };
        audit.BlockId = block.Id;
        audit.Detail = reason;
        var version = await c.State.AddBlockAsync(block, http.RequestAborted).ConfigureAwait(false);
        await c.Blocks.SyncAsync().ConfigureAwait(false);
        return AdminResult.Json(StatusCodes.Status201Created, w =>
        {
            w.WriteNumber("version", version);
            w.WritePropertyName("block");
            WriteBlock(w, block);
        });
    }

    private static async Task<AdminResult> ListBlocksAsync(HttpContext http, AdminContext c, AuditEvent audit)
    {
        var set = await c.State.GetBlocksAsync(http.RequestAborted).ConfigureAwait(false);
        return AdminResult.Json(StatusCodes.Status200OK, w =>
        {
            w.WriteNumber("version", set.Version);
            w.WriteStartArray("blocks");
            foreach (var block in set.Blocks)
            {
                WriteBlock(w, block);
            }

            w.WriteEndArray();
        });
    }

    private static async Task<AdminResult> DeleteBlockAsync(HttpContext http, AdminContext c, AuditEvent audit)
    {
        var id = http.Request.RouteValues["id"] as string ?? string.Empty;
        if (id.Length is 0 or > 64)
        {
            return AdminResult.Fail(BrokerErrors.AdminNotFound, "no block has this id");
        }

        audit.BlockId = JwtReader.Printable(id);
        if (!await c.State.RemoveBlockAsync(id, http.RequestAborted).ConfigureAwait(false))
        {
            return AdminResult.Fail(BrokerErrors.AdminNotFound, "no block has this id");
        }

        await c.Blocks.SyncAsync().ConfigureAwait(false);
        return AdminResult.Empty(StatusCodes.Status204NoContent);
    }

    private static void WriteBlock(Utf8JsonWriter w, Block block)
    {
        w.WriteStartObject();
        w.WriteString("id", block.Id);
        void Optional(string name, string? value)
        {
            if (value is not null)
            {
                w.WriteString(name, value);
            }
        }

        var s = block.Selector;
        Optional("provider", s.Provider);
        Optional("repository_id", s.RepositoryId);
        Optional("owner_id", s.OwnerId);
        Optional("rule_id", s.RuleId);
        Optional("run_id", s.RunId);
        if (s.IssuedBefore is { } before)
        {
            w.WriteString("issued_before", before);
        }

        w.WriteString("created_at", block.CreatedAt);
        w.WriteString("created_by", block.CreatedBy);
        Optional("reason", block.Reason);
        w.WriteEndObject();
    }

    internal static async Task<(JsonDocument? Body, BrokerError? Error)> ReadJsonAsync(HttpContext http)
    {
        if (http.Request.QueryString.HasValue)
        {
            return (null, BrokerErrors.QueryParameters);
        }

        if (!RequestBody.HasMediaType(http.Request, "application/json"))
        {
            return (null, BrokerErrors.AdminNotJson);
        }

        var bytes = await RequestBody.ReadAsync(http.Request, MaxBodyBytes, http.RequestAborted).ConfigureAwait(false);
        if (bytes is null)
        {
            return (null, BrokerErrors.AdminBodyTooLarge);
        }

        if (!System.Text.Unicode.Utf8.IsValid(bytes))
        {
            return (null, BrokerErrors.AdminBodyInvalid);
        }

        try
        {
            var document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 4, AllowDuplicateProperties = false });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                document.Dispose();
                return (null, BrokerErrors.AdminBodyInvalid);
            }

            return (document, null);
        }
        catch (JsonException)
        {
            return (null, BrokerErrors.AdminBodyInvalid);
        }
    }

    internal static string? Unknown(JsonElement root, params string[] known)
    {
        foreach (var property in root.EnumerateObject())
        {
            if (Array.IndexOf(known, property.Name) < 0)
            {
                return property.Name;
            }
        }

        return null;
    }

    /// <summary>Reads an optional (or required) string: present means 1 to max printable characters, no control characters.</summary>
    internal static bool TryString(JsonElement root, string name, bool required, out string? value, int maxLength = MaxValueLength)
    {
        value = null;
        if (!root.TryGetProperty(name, out var element))
        {
            return !required;
        }

        if (element.ValueKind != JsonValueKind.String || element.GetString() is not { } text || text.Length == 0 || text.Length > maxLength || text.Any(char.IsControl))
        {
            return false;
        }

        value = text;
        return true;
    }
}

/// <summary>What an admin handler answers.</summary>
internal sealed record AdminResult(int Status, BrokerError? Error, string? Detail, Action<Utf8JsonWriter>? Body)
{
    public static AdminResult Fail(BrokerError error, string detail) => new(error.Status, error, detail, null);

    public static AdminResult Json(int status, Action<Utf8JsonWriter> body) => new(status, null, null, body);

    public static AdminResult Empty(int status) => new(status, null, null, null);
}

/// <summary>What every admin call needs, and the shared authenticate-run-audit sequence.</summary>
internal sealed class AdminContext(AdminCredentials credentials, IStateStore state, BlockCache blocks, IAuditSink auditSink, ResolvedSettings settings, TimeProvider time)
{
    public IStateStore State { get; } = state;
    public BlockCache Blocks { get; } = blocks;
    public TimeProvider Time { get; } = time;

    public async Task RunAsync(HttpContext http, string type, Func<HttpContext, AdminContext, AuditEvent, Task<AdminResult>> handler)
    {
        var started = Time.GetTimestamp();
        var audit = new AuditEvent { Type = type, RequestId = http.TraceIdentifier, Time = Time.GetUtcNow(), ClientIp = http.Connection.RemoteIpAddress?.ToString() };
        try
        {
            audit.Actor = credentials.Set.Authenticate(http.Request);
            if (audit.Actor is null)
            {
                audit.Outcome = "refused";
                audit.ErrorId = BrokerErrors.Unauthenticated.Id;
                audit.ErrorCode = BrokerErrors.Unauthenticated.Code;
                audit.Detail = $"{type}: no valid admin credential";
                http.Response.Headers.WWWAuthenticate = credentials.Set.Challenge;
                await TokenEndpoints.WriteErrorAsync(http, BrokerErrors.Unauthenticated, settings.Exchange.RetryAfterSeconds).ConfigureAwait(false);
                return;
            }

            AdminResult result;
            try
            {
                result = await handler(http, this, audit).ConfigureAwait(false);
            }
            catch (StateUnavailableException e)
            {
                result = AdminResult.Fail(BrokerErrors.StateUnavailable, e.Message);
            }

            if (result.Error is { } error)
            {
                audit.Outcome = "refused";
                audit.ErrorId = error.Id;
                audit.ErrorCode = error.Code;
                audit.Detail = result.Detail;
                await TokenEndpoints.WriteErrorAsync(http, error, settings.Exchange.RetryAfterSeconds).ConfigureAwait(false);
                return;
            }

            audit.Outcome = "done";
            TokenEndpoints.NoStore(http.Response);
            http.Response.StatusCode = result.Status;
            if (result.Body is { } body)
            {
                http.Response.ContentType = "application/json";
                await using var w = new Utf8JsonWriter(http.Response.Body);
                w.WriteStartObject();
                body(w);
                w.WriteEndObject();
                await w.FlushAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            audit.LatencyMs = Math.Round(Time.GetElapsedTime(started).TotalMilliseconds, 3);
            auditSink.Write(audit);
        }
    }
}
