using System.Text.Json;
using TokenBroker.Configuration;
using TokenBroker.State;

namespace TokenBroker.Signing;

/// <summary>
/// The broker's keys and their schedule. Which keys are published and which key signs each algorithm are computed
/// from configured dates, the admin rotations recorded in the shared state store (<see cref="ApplyRotations"/>)
/// and the injected clock, so replicas with the same configuration and store agree without talking to each other.
/// The JWKS is rendered once per schedule change.
/// </summary>
public sealed class SigningKeyRing : IDisposable
{
    private readonly IReadOnlyDictionary<string, string> _audienceAlgorithms;
    private readonly TimeProvider _time;
    private readonly KeyPlan? _plan;
    private readonly Lock _rescheduling = new();

    // Entries and the key set derived from them change together, so one reference holds both.
    private Snapshot _snapshot;

    /// <summary>A ring with every key active from the start (one per algorithm); the first key's algorithm is the default.</summary>
    public SigningKeyRing(IReadOnlyList<ITokenSigner> keys)
        : this(keys.Select((k, i) => (k, new KeyTimeline { Name = $"Signing:Keys:{i}", Index = i, Algorithm = k.Algorithm })).ToList(),
            keys.Count > 0 ? keys[0].Algorithm : "ES256", new Dictionary<string, string>(), TimeSpan.FromMinutes(5), TimeProvider.System)
    {
    }

    public SigningKeyRing(IReadOnlyList<(ITokenSigner Signer, KeyTimeline Timeline)> entries, string defaultAlgorithm, IReadOnlyDictionary<string, string> audienceAlgorithms, TimeSpan jwksMaxAge, TimeProvider time)
    {
        if (entries.Count == 0)
        {
            throw new ArgumentException("at least one signing key is required", nameof(entries));
        }

        var duplicate = entries.GroupBy(k => k.Signer.KeyId, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new InvalidOperationException($"two signing keys share the kid '{duplicate.Key}'");
        }

        _audienceAlgorithms = audienceAlgorithms;
        _time = time;
        DefaultAlgorithm = defaultAlgorithm;
        JwksMaxAge = jwksMaxAge;
        _snapshot = new Snapshot(entries, KeyRotationSet.Empty, Compute(entries, time.GetUtcNow()));
    }

    private SigningKeyRing(IReadOnlyList<(ITokenSigner Signer, KeyTimeline Timeline)> entries, KeyPlan plan, ResolvedSettings settings, TimeProvider time)
        : this(entries, settings.DefaultAlgorithm, settings.AudienceAlgorithms, settings.JwksMaxAge, time)
    {
        _plan = plan;
    }

    /// <summary>Every loaded key with its dates (removed keys are not loaded).</summary>
    public IReadOnlyList<(ITokenSigner Signer, KeyTimeline Timeline)> Entries => Volatile.Read(ref _snapshot).Entries;

    /// <summary>Every loaded key, whatever its state.</summary>
    public IReadOnlyList<ITokenSigner> Keys => Entries.Select(e => e.Signer).ToList();

    /// <summary>The admin rotations the schedule currently includes (version 0 and none until the store was read).</summary>
    public KeyRotationSet Rotations => Volatile.Read(ref _snapshot).Rotations;

    /// <summary>The plan the schedule is computed from; null for a ring built from signers alone (no rotations).</summary>
    public KeyPlan? Plan => _plan;

    /// <summary>
    /// Recomputes every key's dates from the configuration plus these admin rotations (the shared record as just
    /// read). The same version as the one applied is a no-op. Any other version is applied, also a lower one:
    /// after the store lost its data (Redis restarted without persistence) every replica must fall back to the same
    /// schedule, and new rotations recorded from version 1 again must not be ignored. Reads are serialized by
    /// <see cref="KeyRotationSync"/>, so an older read cannot overtake a newer one.
    /// </summary>
    /// <returns>False when the rotations do not give a valid schedule; the previous schedule stays and <paramref name="errors"/> says why.</returns>
    public bool ApplyRotations(KeyRotationSet rotations, List<string> errors)
    {
        if (_plan is null)
        {
            return true;
        }

        lock (_rescheduling)
        {
            var current = Volatile.Read(ref _snapshot);
            if (rotations.Version == current.Rotations.Version)
            {
                return true;
            }

            var timelines = KeySchedule.Compute(_plan, rotations.Rotations, errors);
            if (errors.Count > 0)
            {
                return false;
            }

            var entries = current.Entries.Select(e => (e.Signer, timelines[e.Timeline.Index])).ToList();
            Volatile.Write(ref _snapshot, new Snapshot(entries, rotations, Compute(entries, _time.GetUtcNow())));
            return true;
        }
    }

    public string DefaultAlgorithm { get; }

    /// <summary>How long verifiers may cache the JWKS: shorter than the announcement lead time.</summary>
    public TimeSpan JwksMaxAge { get; }

    /// <summary>The key that signs tokens of the default algorithm now.</summary>
    /// <exception cref="SigningUnavailableException">No key of that algorithm is active.</exception>
    public ITokenSigner Active => ActiveFor(DefaultAlgorithm);

    /// <summary>The keys published now: next, active and retired.</summary>
    public IReadOnlyList<ITokenSigner> Published => Current.Published;

    /// <summary>The JWKS document now: public members only.</summary>
    public byte[] JwksJson => Current.Jwks;

    /// <summary>Every algorithm a configured key has (for discovery metadata).</summary>
    public IEnumerable<string> Algorithms => Entries.Select(k => k.Signer.Algorithm).Distinct(StringComparer.Ordinal);

    /// <summary>The algorithms tokens are signed with: the default and every audience mapping.</summary>
    public IEnumerable<string> SigningAlgorithms => _audienceAlgorithms.Values.Prepend(DefaultAlgorithm).Distinct(StringComparer.Ordinal);

    /// <summary>The active key of an algorithm now.</summary>
    /// <exception cref="SigningUnavailableException">No key of that algorithm is active.</exception>
    public ITokenSigner ActiveFor(string algorithm) =>
        Current.Active.TryGetValue(algorithm, out var signer) ? signer : throw new SigningUnavailableException($"no {algorithm} key is active");

    /// <summary>
    /// The algorithm for a token with these audiences: each audience's configured algorithm, else the default. Null
    /// when the audiences disagree: one token cannot satisfy verifiers that need different algorithms.
    /// </summary>
    public string? AlgorithmFor(IEnumerable<string> audiences)
    {
        string? chosen = null;
        foreach (var audience in audiences)
        {
            var algorithm = _audienceAlgorithms.TryGetValue(audience, out var a) ? a : DefaultAlgorithm;
            if (chosen is not null && chosen != algorithm)
            {
                return null;
            }

            chosen = algorithm;
        }

        return chosen ?? DefaultAlgorithm;
    }

    private KeySet Current
    {
        get
        {
            var now = _time.GetUtcNow();
            while (true)
            {
                var snapshot = Volatile.Read(ref _snapshot);
                var current = snapshot.Keys;
                if (now >= current.From && now < current.Until)
                {
                    return current;
                }

                // Only replace the snapshot this set was computed from: a concurrent rescheduling wins.
                var next = snapshot with { Keys = Compute(snapshot.Entries, now) };
                if (ReferenceEquals(Interlocked.CompareExchange(ref _snapshot, next, snapshot), snapshot))
                {
                    return next.Keys;
                }
            }
        }
    }

    public void Dispose()
    {
        foreach (var (signer, _) in Entries)
        {
            (signer as IDisposable)?.Dispose();
        }
    }

    private static KeySet Compute(IReadOnlyList<(ITokenSigner Signer, KeyTimeline Timeline)> entries, DateTimeOffset now)
    {
        var states = entries.Select(e => (e.Signer, e.Timeline, State: e.Timeline.StateAt(now))).ToList();
        var published = states.Where(s => KeyTimeline.IsPublished(s.State)).Select(s => s.Signer).ToList();

        // At most one active key per algorithm; should configuration ever allow overlap, the latest activation wins.
        var active = states.Where(s => s.State == KeyState.Active)
            .GroupBy(s => s.Signer.Algorithm, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.OrderByDescending(s => s.Timeline.ActivateAt ?? DateTimeOffset.MinValue).First().Signer, StringComparer.Ordinal);
        var boundaries = entries.SelectMany(e => e.Timeline.Boundaries()).ToList();
        var until = boundaries.Where(b => b > now).DefaultIfEmpty(DateTimeOffset.MaxValue).Min();
        var from = boundaries.Where(b => b <= now).DefaultIfEmpty(DateTimeOffset.MinValue).Max();
        return new KeySet(from, until, published, active, RenderJwks(published));
    }

    private sealed record Snapshot(IReadOnlyList<(ITokenSigner Signer, KeyTimeline Timeline)> Entries, KeyRotationSet Rotations, KeySet Keys);

    private sealed record KeySet(DateTimeOffset From, DateTimeOffset Until, IReadOnlyList<ITokenSigner> Published, IReadOnlyDictionary<string, ITokenSigner> Active, byte[] Jwks);

    /// <summary>Builds the ring from configuration.</summary>
    /// <exception cref="InvalidOperationException">A key cannot be loaded; the message names it.</exception>
    public static SigningKeyRing FromSettings(ResolvedSettings settings, TimeProvider time)
    {
        var now = time.GetUtcNow();
        var entries = new List<(ITokenSigner, KeyTimeline)>();
        try
        {
            for (var i = 0; i < settings.SigningKeys.Count; i++)
            {
                var timeline = settings.KeyTimelines[i];
                if (timeline.StateAt(now) == KeyState.Removed)
                {
                    // Removed keys are neither published nor needed; their HSM objects may already be destroyed.
                    continue;
                }

                entries.Add((Open(timeline.Name, settings.SigningKeys[i], settings.SigningReopenInterval, time), timeline));
            }

            return settings.KeyPlan is { } plan
                ? new SigningKeyRing(entries, plan, settings, time)
                : new SigningKeyRing(entries, settings.DefaultAlgorithm, settings.AudienceAlgorithms, settings.JwksMaxAge, time);
        }
        catch
        {
            foreach (var (signer, _) in entries)
            {
                (signer as IDisposable)?.Dispose();
            }

            throw;
        }
    }

    /// <summary>Opens one configured key.</summary>
    /// <exception cref="InvalidOperationException">The key cannot be loaded; the message names it (and never a PIN).</exception>
    public static ITokenSigner Open(string name, SigningKeyOptions key, TimeSpan reopenInterval, TimeProvider time)
    {
        switch (key.Source)
        {
            case "generated":
                return LocalKeySigner.Generate(key.Algorithm, key.KeyId);
            case "aws-kms":
                return AwsKmsSigner.Open(name, key.KmsKeyId!, key.Region!, key.ServiceUrl, key.Algorithm, key.KeyId, TimeSpan.FromSeconds(5));
            case "pkcs11":
                if (!OperatingSystem.IsLinux())
                {
                    throw new InvalidOperationException($"{name}: pkcs11 keys are supported on Linux only");
                }

                var pin = key.PinFile is { Length: > 0 } file ? Pkcs11Signer.PinFromFile(file) : Pkcs11Signer.PinFromEnvironment(key.PinEnvironmentVariable!);
                return Pkcs11Signer.Open(name, Pkcs11UriCheck.ForPrivateKey(key.Uri!), pin, key.Algorithm, key.KeyId, time, reopenInterval);
            default:
                try
                {
                    return LocalKeySigner.FromPemFile(key.Path!, key.Algorithm, key.KeyId);
                }
                catch (InvalidOperationException e)
                {
                    throw new InvalidOperationException($"{name}: {e.Message}", e);
                }
        }
    }

    /// <summary>Counts signatures and signing failures per key from now on.</summary>
    internal void UseMetrics(Hosting.BrokerMetrics metrics) => _metrics = metrics;

    private Hosting.BrokerMetrics? _metrics;

    /// <summary>
    /// Mints and signs a token with the active key of <paramref name="algorithm"/>, inside a <c>sign</c> activity, and
    /// counts it (<c>tokenbroker.key.signatures</c> or <c>tokenbroker.key.sign_failures</c> by kid, alg, source).
    /// </summary>
    /// <exception cref="SigningUnavailableException">No active key, or the key cannot sign right now.</exception>
    internal string Mint(MintRequest request, string algorithm)
    {
        using var activity = Hosting.BrokerTracing.Source.StartActivity("sign");
        var signer = ActiveFor(algorithm);
        var source = OperatingSystem.IsLinux() && signer is Pkcs11Signer ? "pkcs11" : "local";
        activity?.SetTag("tokenbroker.kid", signer.KeyId);
        activity?.SetTag("tokenbroker.alg", signer.Algorithm);
        try
        {
            var token = TokenMinter.Mint(request, signer);
            _metrics?.Signed(signer.KeyId, signer.Algorithm, source, ok: true);
            return token;
        }
        catch (SigningUnavailableException e)
        {
            _metrics?.Signed(signer.KeyId, signer.Algorithm, source, ok: false);
            activity?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, e.GetType().Name);
            throw;
        }
    }

    /// <summary>Gives HSM signers the host's logging, for faults and reopens at run time.</summary>
    public void UseLogging(ILoggerFactory loggers)
    {
        foreach (var key in Keys)
        {
            if (OperatingSystem.IsLinux() && key is Pkcs11Signer hsm)
            {
                hsm.UseLogger(loggers.CreateLogger<Pkcs11Signer>());
            }
        }
    }

    private static byte[] RenderJwks(IReadOnlyList<ITokenSigner> keys)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartArray("keys");
            foreach (var key in keys)
            {
                var jwk = key.PublicKey;
                w.WriteStartObject();
                w.WriteString("kty", jwk.Kty);
                w.WriteString("use", "sig");
                w.WriteString("alg", key.Algorithm);
                w.WriteString("kid", key.KeyId);
                if (jwk.Kty == "EC")
                {
                    w.WriteString("crv", jwk.Crv);
                    w.WriteString("x", jwk.X);
                    w.WriteString("y", jwk.Y);
                }
                else
                {
                    w.WriteString("n", jwk.N);
                    w.WriteString("e", jwk.E);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }
}
