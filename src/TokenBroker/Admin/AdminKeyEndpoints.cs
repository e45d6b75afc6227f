using System.Text.Json;
using TokenBroker.Audit;
using TokenBroker.Configuration;
using TokenBroker.Errors;
using TokenBroker.RateLimiting;
using TokenBroker.Signing;
using TokenBroker.State;
using TokenBroker.Tokens;

namespace TokenBroker.Admin;

/// <summary>
/// <c>GET /admin/keys</c> (every loaded key with its state and dates on this replica) and
/// <c>POST /admin/keys/rotate</c> (promote a pre-provisioned standby key). A rotation is a record in the shared state
/// store, never per-process memory: every replica computes its schedule from configuration plus that record, so all
/// publish the same JWKS and agree on the active key.
/// </summary>
internal static class AdminKeyEndpoints
{
    private const int MaxAttempts = 3;

    public static void MapAdminKeyEndpoints(this IEndpointRouteBuilder app)
    {
        var admin = app.MapGroup("/admin/keys").DisableAntiforgery().LimitPerClient("Admin", "admin");
        admin.MapGet("", (HttpContext http, AdminContext c) => c.RunAsync(http, "admin.keys.list", ListKeysAsync));
        admin.MapPost("/rotate", (HttpContext http, AdminContext c) => c.RunAsync(http, "admin.keys.rotate", RotateAsync));
    }

    private static async Task<AdminResult> ListKeysAsync(HttpContext http, AdminContext c, AuditEvent audit)
    {
        var ring = http.RequestServices.GetRequiredService<SigningKeyRing>();
        await http.RequestServices.GetRequiredService<KeyRotationSync>().SyncAsync().ConfigureAwait(false);
        var now = c.Time.GetUtcNow();
        var rotations = ring.Rotations;
        return AdminResult.Json(StatusCodes.Status200OK, w =>
        {
            w.WriteString("now", now);
            w.WriteNumber("rotations_version", rotations.Version);
            w.WriteStartArray("keys");
            foreach (var (signer, timeline) in ring.Entries)
            {
                w.WriteStartObject();
                w.WriteString("kid", signer.KeyId);
                w.WriteString("algorithm", signer.Algorithm);
                w.WriteString("name", timeline.Name);
                w.WriteString("state", StateName(timeline.StateAt(now)));
                w.WriteString("activated_by", timeline.Standby ? "standby" : timeline.ActivatedBy.ToString().ToLowerInvariant());
                Date(w, "publish_at", timeline.PublishAt);
                Date(w, "activate_at", timeline.ActivateAt);
                Date(w, "retire_at", timeline.RetireAt);
                Date(w, "remove_at", timeline.RemoveAt);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartArray("rotations");
            foreach (var r in rotations.Rotations)
            {
                WriteRotation(w, r);
            }

            w.WriteEndArray();
        });
    }

    /// <summary>
    /// Promotes a standby key: published now, signing from now + AnnouncementLeadTime, when the key of its algorithm
    /// that would sign then retires (and stays published for the retention). Body (JSON, every field optional):
    /// <c>kid</c> (a configured standby key), <c>algorithm</c> (default: the kid's, else Signing:DefaultAlgorithm; the
    /// first unused standby key of it is chosen), <c>reason</c>.
    /// </summary>
    private static async Task<AdminResult> RotateAsync(HttpContext http, AdminContext c, AuditEvent audit)
    {
        var (body, error) = await AdminEndpoints.ReadJsonAsync(http).ConfigureAwait(false);
        if (body is null)
        {
            return AdminResult.Fail(error!, "body");
        }

        string? kid, algorithm, reason;
        using (body)
        {
            var root = body.RootElement;
            if (AdminEndpoints.Unknown(root, "kid", "algorithm", "reason") is { } unknown)
            {
                return AdminResult.Fail(BrokerErrors.AdminBodyInvalid, $"unknown property '{JwtReader.Printable(unknown)}'");
            }

            if (!AdminEndpoints.TryString(root, "kid", required: false, out kid, maxLength: 64))
            {
                return AdminResult.Fail(BrokerErrors.AdminBodyInvalid, "kid must be a string of 1 to 64 printable characters");
            }

            if (!AdminEndpoints.TryString(root, "algorithm", required: false, out algorithm, maxLength: 8) ||
                (algorithm is not null && Array.IndexOf(SettingsResolver.SigningAlgorithms, algorithm) < 0))
            {
                return AdminResult.Fail(BrokerErrors.AdminBodyInvalid, $"algorithm must be one of {string.Join(", ", SettingsResolver.SigningAlgorithms)}");
            }

            if (!AdminEndpoints.TryString(root, "reason", required: false, out reason, maxLength: 512))
            {
                return AdminResult.Fail(BrokerErrors.AdminBodyInvalid, "reason must be a string of at most 512 printable characters");
            }
        }

        var ring = http.RequestServices.GetRequiredService<SigningKeyRing>();
        if (ring.Plan is not { } plan)
        {
            return AdminResult.Fail(BrokerErrors.KeyRotationNoCandidate, "this broker's keys were not built from configuration");
        }

        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            // Decide against the shared record, not this replica's cache: another replica may have just rotated.
            var set = await c.State.GetKeyRotationsAsync(http.RequestAborted).ConfigureAwait(false);
            var now = c.Time.GetUtcNow();
            var errors = new List<string>();
            var timelines = KeySchedule.Compute(plan, set.Rotations, errors);
            if (errors.Count > 0)
            {
                return AdminResult.Fail(BrokerErrors.KeyRotationNoCandidate, "the recorded rotations give no valid schedule: " + string.Join(" | ", errors));
            }

            KeyTimeline? candidate;
            if (kid is not null)
            {
                var named = timelines.Where(t => t.KeyId == kid).ToList();
                if (named.Count == 0)
                {
                    return AdminResult.Fail(BrokerErrors.AdminNotFound, $"no configured key has the kid '{JwtReader.Printable(kid)}'");
                }

                candidate = named[0];
                if (algorithm is not null && algorithm != candidate.Algorithm)
                {
                    return AdminResult.Fail(BrokerErrors.AdminBodyInvalid, $"key '{kid}' is an {candidate.Algorithm} key, not {algorithm}");
                }

                if (!candidate.Standby)
                {
                    return AdminResult.Fail(BrokerErrors.KeyRotationNoCandidate, set.Rotations.Any(r => r.KeyId == kid)
                        ? $"key '{kid}' was already promoted; keys are never reused"
                        : $"key '{kid}' is not a Standby key; its dates come from the configuration");
                }
            }
            else
            {
                var wanted = algorithm ?? ring.DefaultAlgorithm;
                candidate = timelines.FirstOrDefault(t => t.Standby && t.Algorithm == wanted);
                if (candidate is null)
                {
                    return AdminResult.Fail(BrokerErrors.KeyRotationNoCandidate, $"no unused Standby {wanted} key is configured; generate one in the HSM ceremony and add it to the configuration");
                }
            }

            audit.Detail = $"candidate {candidate.KeyId} ({candidate.Algorithm})";
            var activateAt = now + plan.Lead;
            var pending = timelines.FirstOrDefault(t => t.Algorithm == candidate.Algorithm && !t.Standby && t.ActivateAt is { } a && a > now && a <= activateAt);
            if (pending is not null)
            {
                return AdminResult.Fail(BrokerErrors.KeyRotationPending, $"{pending.Name} ({pending.KeyId ?? "no configured kid"}) activates at {pending.ActivateAt:O}, before a rotation now could; wait until then");
            }

            var retiring = timelines.FirstOrDefault(t => t.Algorithm == candidate.Algorithm && t.StateAt(activateAt) == KeyState.Active);
            var rotation = new KeyRotation
            {
                KeyId = candidate.KeyId!,
                Algorithm = candidate.Algorithm,
                ActivateAt = activateAt,
                RequestedAt = now,
                RequestedBy = audit.Actor!,
                RetiringKeyId = retiring is null ? null : RingKid(ring, retiring),
                Reason = reason,
            };

            var check = new List<string>();
            var after = KeySchedule.Compute(plan, [.. set.Rotations, rotation], check);
            if (check.Count == 0)
            {
                KeySchedule.CheckCoverage(after, ring.SigningAlgorithms, now, check);
            }

            if (check.Count > 0)
            {
                return AdminResult.Fail(BrokerErrors.KeyRotationNoCandidate, "the rotation would give an invalid schedule: " + string.Join(" | ", check));
            }

            var version = await c.State.TryAddKeyRotationAsync(set.Version, rotation, http.RequestAborted).ConfigureAwait(false);
            if (version is null)
            {
                continue; // another rotation was recorded meanwhile: decide again against the new record
            }

            await http.RequestServices.GetRequiredService<KeyRotationSync>().SyncAsync().ConfigureAwait(false);
            var promoted = after[candidate.Index];
            var retired = retiring is null ? null : after[retiring.Index];
            audit.Detail = $"promoted {rotation.KeyId} ({rotation.Algorithm}): published now, signs from {activateAt:O}"
                + (retired is null ? string.Empty : $"; {rotation.RetiringKeyId} retires then and is removed at {retired.RemoveAt:O}")
                + (reason is null ? string.Empty : $"; reason: {reason}");
            return AdminResult.Json(StatusCodes.Status201Created, w =>
            {
                w.WriteNumber("rotations_version", version.Value);
                w.WritePropertyName("rotation");
                WriteRotation(w, rotation);
                Date(w, "publish_at", promoted.PublishAt);
                if (retired is not null)
                {
                    Date(w, "retiring_remove_at", retired.RemoveAt);
                }
            });
        }

        return AdminResult.Fail(BrokerErrors.KeyRotationPending, $"the rotation record changed {MaxAttempts} times while deciding; retry");
    }

    /// <summary>The kid the ring publishes for a key (the configured KeyId, else the opened key's thumbprint).</summary>
    private static string? RingKid(SigningKeyRing ring, KeyTimeline timeline) =>
        timeline.KeyId ?? ring.Entries.FirstOrDefault(e => e.Timeline.Index == timeline.Index).Signer?.KeyId;

    private static string StateName(KeyState state) => state.ToString().ToLowerInvariant();

    private static void Date(Utf8JsonWriter w, string name, DateTimeOffset? value)
    {
        if (value is { } v)
        {
            w.WriteString(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    private static void WriteRotation(Utf8JsonWriter w, KeyRotation r)
    {
        w.WriteStartObject();
        w.WriteString("kid", r.KeyId);
        w.WriteString("algorithm", r.Algorithm);
        w.WriteString("activate_at", r.ActivateAt);
        w.WriteString("requested_at", r.RequestedAt);
        w.WriteString("requested_by", r.RequestedBy);
        if (r.RetiringKeyId is not null)
        {
            w.WriteString("retiring_kid", r.RetiringKeyId);
        }

        if (r.Reason is not null)
        {
            w.WriteString("reason", r.Reason);
        }

        w.WriteEndObject();
    }
}
