namespace TokenBroker.Providers;

/// <summary>
/// Fetches every provider's keys in the background at start-up, so the first job does not pay for discovery, and
/// keeps retrying a provider that could not be reached (5 seconds, doubling to at most 1 minute) until its keys are
/// cached: readiness depends on it, and a replica taken out of the load balancer gets no exchanges that would retry
/// for it. A provider's outage is only logged; it must not keep the broker (and the other providers) from serving.
/// </summary>
internal sealed partial class ProviderWarmUp(ProviderRegistry providers, TimeProvider time, ILogger<ProviderWarmUp> logger) : IHostedService, IDisposable
{
    private static readonly TimeSpan FirstRetry = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan LongestRetry = TimeSpan.FromMinutes(1);

    private readonly CancellationTokenSource _stopping = new();

    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var source in providers.Sources)
        {
            _ = Task.Run(() => WarmUpAsync(source, _stopping.Token), CancellationToken.None);
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
    }

    public void Dispose() => _stopping.Dispose();

    private async Task WarmUpAsync(ProviderKeySource source, CancellationToken stopping)
    {
        var delay = FirstRetry;
        try
        {
            // An exchange may have fetched the keys meanwhile; then there is nothing left to do.
            while (source.LastSuccessAt is null && !await source.WarmUpAsync(stopping).ConfigureAwait(false))
            {
                Log.WarmUpFailed(logger, source.Provider.Name, source.Provider.MetadataAddress, delay.TotalSeconds);
                await Task.Delay(delay, time, stopping).ConfigureAwait(false);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, LongestRetry.Ticks));
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Shutting down.
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1300, Level = LogLevel.Warning, Message = "Keys of provider {Provider} could not be fetched from {Address}; retrying in {Seconds} s and on first use")]
        public static partial void WarmUpFailed(ILogger logger, string provider, string address, double seconds);
    }
}
