using TokenBroker.Configuration;

namespace TokenBroker.State;

/// <summary>
/// This replica's copy of the operator blocks, so the exchange path checks blocks without a state-store round
/// trip. Kept current three ways: a change notification from the store (pub/sub on Redis), a re-read after every
/// reconnection, and a periodic re-read (<see cref="StateOptions.BlockSyncInterval"/>). Versioned: an older snapshot
/// never replaces a newer one. When no re-read has succeeded for <see cref="StateOptions.MaxBlockStaleness"/>, the
/// copy is stale and callers fail closed.
/// </summary>
internal sealed partial class BlockCache : IHostedService, IDisposable
{
    private readonly IStateStore _store;
    private readonly TimeProvider _time;
    private readonly ILogger<BlockCache> _logger;
    private readonly TimeSpan _interval;
    private readonly TimeSpan _maxStaleness;
    private readonly SemaphoreSlim _syncing = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private BlockSet _current = BlockSet.Empty;
    private long _lastSyncTimestamp;
    private bool _synced;
    private ITimer? _timer;

    public BlockCache(IStateStore store, ResolvedSettings settings, TimeProvider time, ILogger<BlockCache> logger)
    {
        _store = store;
        _time = time;
        _logger = logger;
        _interval = settings.State.BlockSyncInterval;
        _maxStaleness = settings.State.MaxBlockStaleness;
        _store.BlocksChanged += OnChanged;
    }

    /// <summary>The newest snapshot this replica has.</summary>
    public BlockSet Current => Volatile.Read(ref _current);

    /// <summary>True when a re-read succeeded recently enough to trust <see cref="Current"/>.</summary>
    public bool IsFresh => Volatile.Read(ref _synced) && _time.GetElapsedTime(Interlocked.Read(ref _lastSyncTimestamp)) <= _maxStaleness;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await SyncAsync().ConfigureAwait(false);
        _timer = _time.CreateTimer(_ => _ = SyncAsync(), null, _interval, _interval);
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _timer?.Dispose();
        _stopping.Cancel();
        return Task.CompletedTask;
    }

    /// <summary>Re-reads the blocks now (also used by the admin API so that its own replica is current at once).</summary>
    public async Task SyncAsync()
    {
        try
        {
            await _syncing.WaitAsync(_stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        try
        {
            var started = _time.GetTimestamp();
            var set = await _store.GetBlocksAsync(_stopping.Token).ConfigureAwait(false);
            Apply(set);
            Interlocked.Exchange(ref _lastSyncTimestamp, started);
            Volatile.Write(ref _synced, true);
        }
        catch (StateUnavailableException e)
        {
            Log.SyncFailed(_logger, e.Message);
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            _syncing.Release();
        }
    }

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

    private void OnChanged() => _ = SyncAsync();

    public void Dispose()
    {
        _store.BlocksChanged -= OnChanged;
        _timer?.Dispose();
        _stopping.Dispose();
        _syncing.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3100, Level = LogLevel.Warning, Message = "Re-reading blocks failed: {Reason}")]
        public static partial void SyncFailed(ILogger logger, string reason);
    }
}
