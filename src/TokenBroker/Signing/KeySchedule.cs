using TokenBroker.Configuration;
using TokenBroker.State;

namespace TokenBroker.Signing;

/// <summary>Where a key is in its life at a given time.</summary>
public enum KeyState
{
    /// <summary>Configured, not yet published (more than the announcement lead time before activation).</summary>
    Scheduled,

    /// <summary>Published in the JWKS, not yet signing.</summary>
    Next,

    /// <summary>Signing tokens of its algorithm (and published).</summary>
    Active,

    /// <summary>No longer signing; published until its last token has expired plus the verifiers' cache time.</summary>
    Retired,

    /// <summary>Not published, not loaded.</summary>
    Removed,

    /// <summary>Configured as <c>Standby</c>: opened and checked, not published, until an admin rotation promotes it.</summary>
    Standby,
}

/// <summary>Where a key's activation time comes from.</summary>
public enum ActivationSource
{
    /// <summary>The configured ActivateAt (or none: active from the start).</summary>
    Configuration,

    /// <summary>Signing:RotateEvery: its place in the pool of its algorithm.</summary>
    Schedule,

    /// <summary>An admin rotation recorded in the state store.</summary>
    Admin,
}

/// <summary>Everything a key schedule is computed from, apart from admin rotations.</summary>
public sealed record KeyPlan
{
    /// <summary>The configured keys, in order.</summary>
    public required IReadOnlyList<SigningKeyOptions> Keys { get; init; }

    /// <summary>How long before activation a key is published; longer than the JWKS cache time.</summary>
    public required TimeSpan Lead { get; init; }

    /// <summary>How long a retired key stays published: the longest token lifetime plus the JWKS cache time plus clock skew.</summary>
    public required TimeSpan Retention { get; init; }

    /// <summary>Signing:RotateEvery, or null.</summary>
    public TimeSpan? RotateEvery { get; init; }

    /// <summary>Signing:RotateFrom: when the second key of each pool activates minus one period (the first is active from the start).</summary>
    public DateTimeOffset? RotateFrom { get; init; }
}

/// <summary>
/// One key's dates, all derived from configuration alone, so every replica computes the same states at the same
/// instant without coordinating. Null means "always" (publish/activate) or "never" (retire/remove).
/// </summary>
public sealed record KeyTimeline
{
    /// <summary>How messages name the key: <c>Signing:Keys:{index}</c>.</summary>
    public required string Name { get; init; }

    public required int Index { get; init; }

    public required string Algorithm { get; init; }

    /// <summary>The configured KeyId, if any (standby keys always have one).</summary>
    public string? KeyId { get; init; }

    /// <summary>A standby key not (yet) promoted by an admin rotation: state <see cref="KeyState.Standby"/>, no dates.</summary>
    public bool Standby { get; init; }

    public ActivationSource ActivatedBy { get; init; }

    /// <summary>ActivateAt minus the announcement lead time.</summary>
    public DateTimeOffset? PublishAt { get; init; }

    public DateTimeOffset? ActivateAt { get; init; }

    /// <summary>The configured RetireAt, or the activation of the next key of the same algorithm if earlier.</summary>
    public DateTimeOffset? RetireAt { get; init; }

    /// <summary>The configured RemoveAt, or RetireAt plus the retention (longest token lifetime + JWKS cache time + clock skew).</summary>
    public DateTimeOffset? RemoveAt { get; init; }

    public KeyState StateAt(DateTimeOffset t) =>
        Standby ? KeyState.Standby
        : RemoveAt is { } remove && remove <= t ? KeyState.Removed
        : RetireAt is { } retire && retire <= t ? KeyState.Retired
        : ActivateAt is not { } activate || activate <= t ? KeyState.Active
        : PublishAt is { } publish && publish <= t ? KeyState.Next
        : KeyState.Scheduled;

    public static bool IsPublished(KeyState state) => state is KeyState.Next or KeyState.Active or KeyState.Retired;

    /// <summary>Every instant at which this key changes state.</summary>
    public IEnumerable<DateTimeOffset> Boundaries() =>
        new[] { PublishAt, ActivateAt, RetireAt, RemoveAt }.Where(d => d is not null).Select(d => d!.Value);
}

/// <summary>Derives each key's timeline from configuration and checks that rotation is safe for verifiers.</summary>
public static class KeySchedule
{
    /// <param name="keys">The configured keys, in order.</param>
    /// <param name="lead">How long before activation a key is published; longer than the JWKS cache time.</param>
    /// <param name="retention">How long a retired key stays published: the longest token lifetime plus the JWKS cache time plus clock skew.</param>
    /// <param name="errors">Receives every problem.</param>
    public static IReadOnlyList<KeyTimeline> Compute(IReadOnlyList<SigningKeyOptions> keys, TimeSpan lead, TimeSpan retention, List<string> errors) =>
        Compute(new KeyPlan { Keys = keys, Lead = lead, Retention = retention }, [], errors);

    /// <summary>
    /// Each key's timeline from the configuration plus the recorded admin rotations. A rotation applies only to a key
    /// configured as Standby with that KeyId and algorithm (the first rotation of a key counts); once an operator
    /// writes the dates into the configuration instead, the record is ignored for that key.
    /// </summary>
    public static IReadOnlyList<KeyTimeline> Compute(KeyPlan plan, IReadOnlyList<KeyRotation> rotations, List<string> errors)
    {
        var keys = plan.Keys;
        var lead = plan.Lead;
        var retention = plan.Retention;
        var timelines = new KeyTimeline[keys.Count];
        var promoted = new Dictionary<string, KeyRotation>(StringComparer.Ordinal);
        foreach (var rotation in rotations)
        {
            promoted.TryAdd(rotation.KeyId, rotation);
        }

        // The effective activation of every key that takes part in the schedule; unpromoted standby keys do not.
        // A key takes part with its configured options and its effective activation (configured, scheduled or admin).
        var effective = new List<(SigningKeyOptions Key, DateTimeOffset? ActivateAt, int Index, ActivationSource Source)>();
        for (var i = 0; i < keys.Count; i++)
        {
            var key = keys[i];
            if (!key.Standby)
            {
                continue;
            }

            if (key.KeyId is { } kid && promoted.TryGetValue(kid, out var rotation) && rotation.Algorithm == key.Algorithm)
            {
                effective.Add((key, rotation.ActivateAt, i, ActivationSource.Admin));
            }
            else
            {
                timelines[i] = new KeyTimeline { Name = $"Signing:Keys:{i}", Index = i, Algorithm = key.Algorithm, KeyId = key.KeyId, Standby = true };
            }
        }

        foreach (var pool in keys.Select((k, i) => (Key: k, Index: i)).Where(k => !k.Key.Standby).GroupBy(k => k.Key.Algorithm, StringComparer.Ordinal))
        {
            var position = 0;
            foreach (var (key, i) in pool)
            {
                if (plan.RotateEvery is { } every && plan.RotateFrom is { } from)
                {
                    // Deterministic from the anchor: every replica derives the same dates without coordinating.
                    effective.Add((key, position == 0 ? null : from + (every * position), i, ActivationSource.Schedule));
                }
                else
                {
                    effective.Add((key, key.ActivateAt, i, ActivationSource.Configuration));
                }

                position++;
            }
        }

        var sources = effective.ToDictionary(e => e.Index, e => e.Source);
        foreach (var group in effective.GroupBy(k => k.Key.Algorithm, StringComparer.Ordinal))
        {
            // Null (active from the start) first, then by activation.
            var ordered = group.OrderBy(k => k.ActivateAt ?? DateTimeOffset.MinValue).ThenBy(k => k.Index).ToList();
            for (var n = 0; n < ordered.Count; n++)
            {
                var (key, activateAt, i, _) = ordered[n];
                var name = $"Signing:Keys:{i}";
                if (n > 0 && ordered[n - 1].ActivateAt == activateAt)
                {
                    errors.Add(activateAt is null
                        ? $"{name} and Signing:Keys:{ordered[n - 1].Index} are both {group.Key} keys without ActivateAt; only one key per algorithm signs at a time, so give the newer one an ActivateAt"
                        : $"{name} and Signing:Keys:{ordered[n - 1].Index} are both {group.Key} keys activating at {activateAt:O}");
                }

                var successor = ordered.Skip(n + 1).Select(k => k.ActivateAt).FirstOrDefault(at => at != activateAt);
                if (key.RetireAt is { } configuredRetire && activateAt is { } a && configuredRetire <= a)
                {
                    errors.Add($"{name}:RetireAt must be later than its ActivateAt");
                }

                DateTimeOffset? retire = (key.RetireAt, successor) switch
                {
                    ({ } r, { } s) => r < s ? r : s,
                    ({ } r, null) => r,
                    (null, { } s) => s,
                    _ => null,
                };

                DateTimeOffset? remove = retire is { } rt ? rt + retention : null;
                if (key.RemoveAt is { } configuredRemove)
                {
                    if (retire is null)
                    {
                        errors.Add($"{name}:RemoveAt needs a RetireAt or a later {group.Key} key that takes over; a key still signing cannot be removed");
                    }
                    else if (configuredRemove < remove)
                    {
                        errors.Add($"{name}:RemoveAt {configuredRemove:O} is too early: the key retires at {retire:O} and must stay published for the longest token lifetime plus the JWKS cache time and clock skew ({retention}), until at least {remove:O}");
                    }
                    else
                    {
                        remove = configuredRemove;
                    }
                }

                timelines[i] = new KeyTimeline
                {
                    Name = name,
                    Index = i,
                    Algorithm = key.Algorithm,
                    KeyId = key.KeyId,
                    ActivatedBy = sources[i],
                    PublishAt = activateAt - lead,
                    ActivateAt = activateAt,
                    RetireAt = retire,
                    RemoveAt = remove,
                };
            }
        }

        return timelines;
    }

    /// <summary>
    /// Checks that every algorithm tokens are signed with has an active key now and at every later instant the
    /// schedule changes, so that no exchange can find itself without a key.
    /// </summary>
    public static void CheckCoverage(IReadOnlyList<KeyTimeline> timelines, IEnumerable<string> required, DateTimeOffset now, List<string> errors)
    {
        foreach (var algorithm in required.Distinct(StringComparer.Ordinal))
        {
            var ofAlgorithm = timelines.Where(t => t.Algorithm == algorithm).ToList();
            if (ofAlgorithm.Count == 0)
            {
                errors.Add($"Signing: tokens are to be signed with {algorithm} but no {algorithm} key is configured");
                continue;
            }

            var instants = ofAlgorithm.SelectMany(t => t.Boundaries()).Where(b => b > now).Prepend(now).Order();
            foreach (var at in instants)
            {
                if (!ofAlgorithm.Any(t => t.StateAt(at) == KeyState.Active))
                {
                    errors.Add(at == now
                        ? $"Signing: no {algorithm} key is active now ({now:O}); one key of each algorithm in use must be active"
                        : $"Signing: from {at:O} no {algorithm} key is active; configure a successor that activates by then");
                    break;
                }
            }
        }
    }
}
