using System.Collections.Concurrent;

namespace TokenBroker.State;

/// <summary>
/// Process-local state for development, the demo and tests. Atomic per key under concurrency; expired entries
/// are swept periodically. Not shared between replicas.
/// </summary>
public sealed class InMemoryStateStore : IStateStore, IDisposable
{
    private readonly ConcurrentDictionary<string, ReplayMark> _replay = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, IssuedTokenRecord> _issued = new(StringComparer.Ordinal);
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

        var now = _time.GetUtcNow();
        var mark = new ReplayMark(replayExpiresAt, issued.Jti);
        while (true)
        {
            if (_replay.TryAdd(replayKey, mark))
            {
                break;
            }

            // A mark that has expired may be replaced, but only atomically against the exact value seen.
            if (!_replay.TryGetValue(replayKey, out var existing))
            {
                continue;
            }

            if (existing.ExpiresAt > now)
            {
                return ValueTask.FromResult(false);
            }

            if (_replay.TryUpdate(replayKey, mark, existing))
            {
                break;
            }
        }

        _issued[issued.Jti] = issued;
        return ValueTask.FromResult(true);
    }

    public ValueTask ReleaseAsync(string replayKey, string issuedJti, CancellationToken cancel)
    {
        if (_replay.TryGetValue(replayKey, out var existing) && existing.IssuedJti == issuedJti)
        {
            _replay.TryRemove(new KeyValuePair<string, ReplayMark>(replayKey, existing));
        }

        _issued.TryRemove(issuedJti, out _);
        return ValueTask.CompletedTask;
    }

    public ValueTask RecordIssuedAsync(IssuedTokenRecord issued, CancellationToken cancel)
    {
        _issued[issued.Jti] = issued;
        return ValueTask.CompletedTask;
    }

    public ValueTask<IssuedTokenRecord?> GetIssuedAsync(string jti, CancellationToken cancel) =>
        ValueTask.FromResult(_issued.TryGetValue(jti, out var record) && record.ExpiresAt > _time.GetUtcNow() ? record : null);

    public ValueTask<bool> RevokeAsync(string jti, DateTimeOffset revokedAt, CancellationToken cancel)
    {
        while (_issued.TryGetValue(jti, out var record) && record.ExpiresAt > _time.GetUtcNow())
        {
            if (record.RevokedAt is not null || _issued.TryUpdate(jti, record with { RevokedAt = revokedAt }, record))
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
        var now = _time.GetUtcNow();
        foreach (var (key, mark) in _replay)
        {
            if (mark.ExpiresAt <= now)
            {
                _replay.TryRemove(new KeyValuePair<string, ReplayMark>(key, mark));
            }
        }

        foreach (var (jti, record) in _issued)
        {
            if (record.ExpiresAt <= now)
            {
                _issued.TryRemove(new KeyValuePair<string, IssuedTokenRecord>(jti, record));
            }
        }
    }

    public void Dispose() => _sweeper.Dispose();

    private sealed record ReplayMark(DateTimeOffset ExpiresAt, string IssuedJti);
}
