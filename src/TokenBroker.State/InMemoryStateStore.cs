using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace TokenBroker.State;

/// <summary>
/// Process-local state for development, the demo and tests. Atomic per key under concurrency; expired entries
/// are swept periodically. Not shared between replicas.
/// </summary>
/// <remarks>
/// Every replay mark and issued-token record stays in the broker's heap for its token's lifetime, so what one
/// exchange costs here is the broker's memory per exchange held (its RSS under sustained load, and the work of each
/// full collection). It is kept small: a replay key (a SHA-256 in hex) is held as its 32 bytes, times as ticks, and
/// the strings that repeat across the jobs of a repository (subject, ids, rule, provider) are shared through a small
/// lossy table rather than held once per exchange. About 350 bytes per exchange when subjects repeat and 550 when
/// nothing does, against 760-780 for plain strings and records (<c>InMemoryStateStoreTests</c>).
/// </remarks>
public sealed class InMemoryStateStore : IStateStore, IDisposable
{
    /// <summary>Slots of the table that shares repeated strings (a power of two; at most this many are kept alive).</summary>
    private const int SharedSlots = 4096;

    private readonly ConcurrentDictionary<ReplayDigest, ReplayMark> _replay = new();
    private readonly ConcurrentDictionary<string, HeldRecord> _issued = new(StringComparer.Ordinal);
    private readonly string?[] _shared = new string?[SharedSlots];
    private readonly Lock _blocksLock = new();
    private BlockSet _blocks = BlockSet.Empty;
    private KeyRotationSet _rotations = KeyRotationSet.Empty;
    private readonly TimeProvider _time;
    private readonly ITimer _sweeper;

    public InMemoryStateStore(TimeProvider time)
    {
        _time = time;
        _sweeper = time.CreateTimer(_ => Sweep(), null, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1));
    }

    public ValueTask<bool> TryConsumeAsync(string replayKey, DateTimeOffset replayExpiresAt, IssuedTokenRecord issued, CancellationToken cancel)
    {
        if (!issued.Jti.StartsWith(StateKeys.ShardTag(replayKey), StringComparison.Ordinal))
        {
            throw new ArgumentException("the issued jti must start with the replay key's shard tag", nameof(issued));
        }

        var now = _time.GetUtcNow().UtcTicks;
        var key = ReplayDigest.Of(replayKey);
        var held = Hold(issued);
        var mark = new ReplayMark(replayExpiresAt.UtcTicks, held.Jti);
        while (true)
        {
            if (_replay.TryAdd(key, mark))
            {
                break;
            }

            // A mark that has expired may be replaced, but only atomically against the exact value seen.
            if (!_replay.TryGetValue(key, out var existing))
            {
                continue;
            }

            if (existing.ExpiresAtTicks > now)
            {
                return ValueTask.FromResult(false);
            }

            if (_replay.TryUpdate(key, mark, existing))
            {
                break;
            }
        }

        _issued[held.Jti] = held;
        return ValueTask.FromResult(true);
    }

    public ValueTask ReleaseAsync(string replayKey, string issuedJti, CancellationToken cancel)
    {
        var key = ReplayDigest.Of(replayKey);
        if (_replay.TryGetValue(key, out var existing) && existing.IssuedJti == issuedJti)
        {
            _replay.TryRemove(new KeyValuePair<ReplayDigest, ReplayMark>(key, existing));
        }

        _issued.TryRemove(issuedJti, out _);
        return ValueTask.CompletedTask;
    }

    public ValueTask RecordIssuedAsync(IssuedTokenRecord issued, CancellationToken cancel)
    {
        var held = Hold(issued);
        _issued[held.Jti] = held;
        return ValueTask.CompletedTask;
    }

    public ValueTask<IssuedTokenRecord?> GetIssuedAsync(string jti, CancellationToken cancel) =>
        ValueTask.FromResult(_issued.TryGetValue(jti, out var held) && held.ExpiresAtTicks > _time.GetUtcNow().UtcTicks ? held.ToRecord() : null);

    public ValueTask<bool> RevokeAsync(string jti, DateTimeOffset revokedAt, CancellationToken cancel)
    {
        // Held records are immutable: a revocation replaces the record it read, or reads again if it was replaced.
        while (_issued.TryGetValue(jti, out var held) && held.ExpiresAtTicks > _time.GetUtcNow().UtcTicks)
        {
            if (held.RevokedAtTicks is not null || _issued.TryUpdate(jti, held with { RevokedAtTicks = revokedAt.UtcTicks }, held))
            {
                return ValueTask.FromResult(true);
            }
        }

        return ValueTask.FromResult(false);
    }

    public ValueTask<BlockSet> GetBlocksAsync(CancellationToken cancel) => ValueTask.FromResult(Volatile.Read(ref _blocks));

    public ValueTask<long> AddBlockAsync(Block block, CancellationToken cancel)
    {
        long version;
        lock (_blocksLock)
        {
            var current = _blocks;
            var others = current.Blocks.Where(b => !string.Equals(b.Id, block.Id, StringComparison.Ordinal));
            version = current.Version + 1;
            Volatile.Write(ref _blocks, new BlockSet(version, [.. others, block]));
        }

        BlocksChanged?.Invoke();
        return ValueTask.FromResult(version);
    }

    public ValueTask<bool> RemoveBlockAsync(string id, CancellationToken cancel)
    {
        lock (_blocksLock)
        {
            var current = _blocks;
            if (!current.Blocks.Any(b => string.Equals(b.Id, id, StringComparison.Ordinal)))
            {
                return ValueTask.FromResult(false);
            }

            Volatile.Write(ref _blocks, new BlockSet(current.Version + 1, [.. current.Blocks.Where(b => !string.Equals(b.Id, id, StringComparison.Ordinal))]));
        }

        BlocksChanged?.Invoke();
        return ValueTask.FromResult(true);
    }

    public ValueTask<KeyRotationSet> GetKeyRotationsAsync(CancellationToken cancel) => ValueTask.FromResult(Volatile.Read(ref _rotations));

    public ValueTask<long?> TryAddKeyRotationAsync(long expectedVersion, KeyRotation rotation, CancellationToken cancel)
    {
        long version;
        lock (_blocksLock)
        {
            var current = _rotations;
            if (current.Version != expectedVersion || current.Rotations.Any(r => string.Equals(r.KeyId, rotation.KeyId, StringComparison.Ordinal)))
            {
                return ValueTask.FromResult<long?>(null);
            }

            version = current.Version + 1;
            Volatile.Write(ref _rotations, new KeyRotationSet(version, [.. current.Rotations, rotation]));
        }

        KeyRotationsChanged?.Invoke();
        return ValueTask.FromResult<long?>(version);
    }

    public event Action? KeyRotationsChanged;

    public ValueTask<bool> PingAsync(CancellationToken cancel) => ValueTask.FromResult(true);

    public event Action? BlocksChanged;

    /// <summary>Entries currently held (tests).</summary>
    internal int ReplayCount => _replay.Count;

    internal void Sweep()
    {
        var now = _time.GetUtcNow().UtcTicks;
        foreach (var (key, mark) in _replay)
        {
            if (mark.ExpiresAtTicks <= now)
            {
                _replay.TryRemove(new KeyValuePair<ReplayDigest, ReplayMark>(key, mark));
            }
        }

        foreach (var (jti, held) in _issued)
        {
            if (held.ExpiresAtTicks <= now)
            {
                _issued.TryRemove(new KeyValuePair<string, HeldRecord>(jti, held));
            }
        }
    }

    public void Dispose() => _sweeper.Dispose();

    /// <summary>The record as held: times as UTC ticks, repeated strings shared (the jti is the record's own).</summary>
    private HeldRecord Hold(IssuedTokenRecord record) => new(
        record.Jti,
        record.ExpiresAt.UtcTicks,
        record.IssuedAt.UtcTicks,
        record.RevokedAt?.UtcTicks,
        Share(record.Subject)!,
        Share(record.Rule)!,
        Share(record.Provider)!,
        Share(record.RepositoryId),
        Share(record.OwnerId),
        Share(record.RunId));

    /// <summary>
    /// An equal string that may already be held: a lossy table (one string per slot, the latest wins) keeps the
    /// strings that repeat across exchanges, such as a repository's subject and ids, once instead of once per
    /// exchange. It never holds more than <see cref="SharedSlots"/> strings. The slot comes from the process's
    /// randomised string hash, so a caller cannot aim tokens at one slot; a race between two writers only loses a
    /// chance to share.
    /// </summary>
    private string? Share(string? value)
    {
        if (value is null)
        {
            return null;
        }

        ref var slot = ref _shared[value.GetHashCode() & (SharedSlots - 1)];
        var held = Volatile.Read(ref slot);
        if (held is not null && string.Equals(held, value, StringComparison.Ordinal))
        {
            return held;
        }

        Volatile.Write(ref slot, value);
        return value;
    }

    /// <summary>
    /// A replay key as 32 bytes. The broker's keys are SHA-256 digests in lower-case hex (<c>ReplayKey</c>), held as
    /// those bytes; any other key is held as the SHA-256 of its UTF-16 after a zero character, which no hex key's bytes can
    /// equal without a SHA-256 preimage. Hashing in dictionaries uses the process's randomised <see cref="HashCode"/>.
    /// </summary>
    private readonly record struct ReplayDigest(ulong A, ulong B, ulong C, ulong D)
    {
        public static ReplayDigest Of(string replayKey)
        {
            Span<byte> bytes = stackalloc byte[32];
            if (replayKey.Length == 64 && StateKeys.IsLowerHex(replayKey))
            {
                Convert.FromHexString(replayKey, bytes, out _, out _);
            }
            else
            {
                // Its UTF-16 code units as they are: exact for any string, unpaired surrogates included.
                SHA256.HashData(MemoryMarshal.AsBytes(("\0" + replayKey).AsSpan()), bytes);
            }

            var words = MemoryMarshal.Cast<byte, ulong>(bytes);
            return new ReplayDigest(words[0], words[1], words[2], words[3]);
        }

        // The synthesized Equals compares the four words; the hash is HashCode's, seeded per process.
        public override int GetHashCode() => HashCode.Combine(A, B, C, D);
    }

    private readonly record struct ReplayMark(long ExpiresAtTicks, string IssuedJti);

    private sealed record HeldRecord(
        string Jti, long ExpiresAtTicks, long IssuedAtTicks, long? RevokedAtTicks, string Subject, string Rule, string Provider, string? RepositoryId, string? OwnerId, string? RunId)
    {
        public IssuedTokenRecord ToRecord() => new()
        {
            Jti = Jti,
            ExpiresAt = new DateTimeOffset(ExpiresAtTicks, TimeSpan.Zero),
            IssuedAt = new DateTimeOffset(IssuedAtTicks, TimeSpan.Zero),
            RevokedAt = RevokedAtTicks is { } revoked ? new DateTimeOffset(revoked, TimeSpan.Zero) : null,
            Subject = Subject,
            Rule = Rule,
            Provider = Provider,
            RepositoryId = RepositoryId,
            OwnerId = OwnerId,
            RunId = RunId,
        };
    }
}
