namespace TokenBroker.State;

/// <summary>
/// Keeps a replica's copy of some shared state current: one read at start-up, one on every change notification
/// from the store, and one every <c>interval</c> as the backstop for a lost notification. Reads never overlap (a
/// notification during a read waits for it), and a read that finds the store unavailable is logged and left to the
/// next trigger. Subclasses say what to read and how to apply it.
/// </summary>
internal abstract class StateFollower : IHostedService, IDisposable
{
    private readonly TimeProvider _time;
    private readonly TimeSpan _interval;
    private readonly Action<Action> _unsubscribe;
    private readonly SemaphoreSlim _syncing = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private ITimer? _timer;

    /// <param name="time">The clock for the periodic re-read.</param>
    /// <param name="interval">Time between periodic re-reads.</param>
    /// <param name="subscribe">Adds the handler to the store's change event.</param>
    /// <param name="unsubscribe">Removes it again, on dispose.</param>
    protected StateFollower(TimeProvider time, TimeSpan interval, Action<Action> subscribe, Action<Action> unsubscribe)
    {
        _time = time;
        _interval = interval;
        _unsubscribe = unsubscribe;
        subscribe(OnChanged);
    }

    protected TimeProvider Time => _time;

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

    /// <summary>Re-reads now (the admin API calls this so that its own replica is current at once).</summary>
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
            await ReadAndApplyAsync(_stopping.Token).ConfigureAwait(false);
        }
        catch (StateUnavailableException e)
        {
            OnReadFailed(e.Message);
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            _syncing.Release();
        }
    }

    /// <summary>Reads the shared state and applies it to this replica's copy.</summary>
    protected abstract Task ReadAndApplyAsync(CancellationToken cancel);

    /// <summary>The store could not be read; the next trigger tries again.</summary>
    protected abstract void OnReadFailed(string reason);

    private void OnChanged() => _ = SyncAsync();

    public void Dispose()
    {
        _unsubscribe(OnChanged);
        _timer?.Dispose();
        _stopping.Dispose();
        _syncing.Dispose();
        GC.SuppressFinalize(this);
    }
}
