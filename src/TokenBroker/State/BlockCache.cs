using TokenBroker.Configuration;

namespace TokenBroker.State;

/// <summary>
/// This replica's copy of the operator blocks, so the exchange path checks blocks without a state-store round
/// trip. Kept current three ways: a change notification from the store (pub/sub on Redis), a re-read after every
/// reconnection, and a periodic re-read (<see cref="StateOptions.BlockSyncInterval"/>). Versioned: an older snapshot
/// never replaces a newer one. When no re-read has succeeded for <see cref="StateOptions.MaxBlockStaleness"/>, the
/// copy is stale and callers fail closed.
/// </summary>
internal sealed partial class BlockCache : StateFollower
{
    private readonly IStateStore _store;
    private readonly ILogger<BlockCache> _logger;
    private readonly TimeSpan _maxStaleness;
    private BlockSet _current = BlockSet.Empty;
    private long _lastSyncTimestamp;
    private bool _synced;

    public BlockCache(IStateStore store, ResolvedSettings settings, TimeProvider time, ILogger<BlockCache> logger)
        : base(time, settings.State.BlockSyncInterval, h => store.BlocksChanged += h, h => store.BlocksChanged -= h)
    {
        _store = store;
        _logger = logger;
        _maxStaleness = settings.State.MaxBlockStaleness;
    }

    /// <summary>The newest snapshot this replica has.</summary>
    public BlockSet Current => Volatile.Read(ref _current);

    /// <summary>True when a re-read succeeded recently enough to trust <see cref="Current"/>.</summary>
    public bool IsFresh => Volatile.Read(ref _synced) && Time.GetElapsedTime(Interlocked.Read(ref _lastSyncTimestamp)) <= _maxStaleness;

    protected override async Task ReadAndApplyAsync(CancellationToken cancel)
    {
        var started = Time.GetTimestamp();
        var set = await _store.GetBlocksAsync(cancel).ConfigureAwait(false);
        Apply(set);
        Interlocked.Exchange(ref _lastSyncTimestamp, started);
        Volatile.Write(ref _synced, true);
    }

    protected override void OnReadFailed(string reason) => Log.SyncFailed(_logger, reason);

    private void Apply(BlockSet set)
    {
        while (true)
        {
            var current = Volatile.Read(ref _current);
            if (set.Version < current.Version || ReferenceEquals(Interlocked.CompareExchange(ref _current, set, current), current))
            {
                return;
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3100, Level = LogLevel.Warning, Message = "Re-reading blocks failed: {Reason}")]
        public static partial void SyncFailed(ILogger logger, string reason);
    }
}
