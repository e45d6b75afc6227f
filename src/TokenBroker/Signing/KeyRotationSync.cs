using TokenBroker.Configuration;
using TokenBroker.State;

namespace TokenBroker.Signing;

/// <summary>
/// Keeps this replica's key schedule in step with the admin rotations in the shared state store: re-reads the
/// record at start-up, on every change notification and every State:BlockSyncInterval (the backstop for a lost
/// notification), and hands newer versions to the <see cref="SigningKeyRing"/>. A rotation is announced
/// AnnouncementLeadTime before it signs and the JWKS max-age is half of that, so a replica that learns of it
/// within that margin still publishes the new key before verifiers need it.
/// </summary>
internal sealed partial class KeyRotationSync : IHostedService, IDisposable
{
    private readonly IStateStore _store;
    private readonly SigningKeyRing _ring;
    private readonly TimeProvider _time;
    private readonly ILogger<KeyRotationSync> _logger;
    private readonly TimeSpan _interval;
    private readonly SemaphoreSlim _syncing = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private ITimer? _timer;
    private bool _synced;

    public KeyRotationSync(IStateStore store, SigningKeyRing ring, ResolvedSettings settings, TimeProvider time, ILogger<KeyRotationSync> logger)
    {
        _store = store;
        _ring = ring;
        _time = time;
        _logger = logger;
        _interval = settings.State.BlockSyncInterval;
        _store.KeyRotationsChanged += OnChanged;
    }

    /// <summary>True once the record has been read (readiness: before that this replica might publish a stale key set).</summary>
    public bool HasSynced => Volatile.Read(ref _synced);

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

    /// <summary>Re-reads the rotations now (the admin API calls this so that its own replica is current at once).</summary>
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
            var set = await _store.GetKeyRotationsAsync(_stopping.Token).ConfigureAwait(false);
            var errors = new List<string>();
            if (_ring.ApplyRotations(set, errors))
            {
                Volatile.Write(ref _synced, true);
            }
            else
            {
                // Cannot happen for records this broker wrote against the same configuration; keep the last good schedule.
                Log.RotationsRejected(_logger, set.Version, string.Join(" | ", errors));
            }
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

    private void OnChanged() => _ = SyncAsync();

    public void Dispose()
    {
        _store.KeyRotationsChanged -= OnChanged;
        _timer?.Dispose();
        _stopping.Dispose();
        _syncing.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3110, Level = LogLevel.Warning, Message = "Re-reading key rotations failed: {Reason}")]
        public static partial void SyncFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 3111, Level = LogLevel.Error, Message = "Key rotations version {Version} give no valid schedule with this configuration; the previous schedule stays: {Errors}")]
        public static partial void RotationsRejected(ILogger logger, long version, string errors);
    }
}
