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
internal sealed partial class KeyRotationSync : StateFollower
{
    private readonly IStateStore _store;
    private readonly SigningKeyRing _ring;
    private readonly ILogger<KeyRotationSync> _logger;
    private bool _synced;

    public KeyRotationSync(IStateStore store, SigningKeyRing ring, ResolvedSettings settings, TimeProvider time, ILogger<KeyRotationSync> logger)
        : base(time, settings.State.BlockSyncInterval, h => store.KeyRotationsChanged += h, h => store.KeyRotationsChanged -= h)
    {
        _store = store;
        _ring = ring;
        _logger = logger;
    }

    /// <summary>True once the record has been read (readiness: before that this replica might publish a stale key set).</summary>
    public bool HasSynced => Volatile.Read(ref _synced);

    protected override async Task ReadAndApplyAsync(CancellationToken cancel)
    {
        var set = await _store.GetKeyRotationsAsync(cancel).ConfigureAwait(false);
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

    protected override void OnReadFailed(string reason) => Log.SyncFailed(_logger, reason);

    private static partial class Log
    {
        [LoggerMessage(EventId = 3110, Level = LogLevel.Warning, Message = "Re-reading key rotations failed: {Reason}")]
        public static partial void SyncFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 3111, Level = LogLevel.Error, Message = "Key rotations version {Version} give no valid schedule with this configuration; the previous schedule stays: {Errors}")]
        public static partial void RotationsRejected(ILogger logger, long version, string errors);
    }
}
