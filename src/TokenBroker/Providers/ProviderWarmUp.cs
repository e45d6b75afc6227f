namespace TokenBroker.Providers;

/// <summary>
/// Fetches every provider's keys in the background at start-up, so the first job does not pay for discovery.
/// A provider that cannot be reached is only logged: it is retried on first use, and its outage must not keep the
/// broker (and the other providers) from serving.
/// </summary>
internal sealed partial class ProviderWarmUp(ProviderRegistry providers, ILogger<ProviderWarmUp> logger) : IHostedService, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();

    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var source in providers.Sources)
        {
            _ = Task.Run(async () =>
            {
                if (!await source.WarmUpAsync(_stopping.Token).ConfigureAwait(false) && !_stopping.IsCancellationRequested)
                {
                    Log.WarmUpFailed(logger, source.Provider.Name, source.Provider.MetadataAddress);
                }
            }, CancellationToken.None);
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
    }

    public void Dispose() => _stopping.Dispose();

    private static partial class Log
    {
        [LoggerMessage(EventId = 1300, Level = LogLevel.Warning, Message = "Keys of provider {Provider} could not be fetched at start-up from {Address}; retrying on first use")]
        public static partial void WarmUpFailed(ILogger logger, string provider, string address);
    }
}
