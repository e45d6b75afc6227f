using TokenBroker.Configuration;

namespace TokenBroker.Hosting;

/// <summary>
/// The first step of a stop: <c>/readyz</c> already answers 503 (the host signalled ApplicationStopping), and for
/// <c>Hosting:DrainDelay</c> the listener stays open so that load balancers stop routing here before connections are
/// refused. Then Kestrel stops accepting and waits for in-flight requests, within <c>Hosting:ShutdownTimeout</c>.
/// </summary>
internal sealed partial class GracefulShutdown(ResolvedSettings settings, TimeProvider time, ILogger<GracefulShutdown> logger) : IHostedLifecycleService
{
    private volatile bool _stopping;

    /// <summary>
    /// True from the first moment of a stop. The host fires ApplicationStopping only after the lifecycle services'
    /// StoppingAsync when the stop does not come from a signal, so readiness checks this as well.
    /// </summary>
    public bool IsStopping => _stopping;

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        _stopping = true;
        var delay = settings.Hosting.DrainDelay;
        Log.Stopping(logger, delay.TotalSeconds, settings.Hosting.ShutdownTimeout.TotalSeconds);
        if (delay > TimeSpan.Zero)
        {
            try
            {
                await Task.Delay(delay, time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // The shutdown timeout ran out first: stop now.
            }
        }
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private static partial class Log
    {
        [LoggerMessage(EventId = 1610, Level = LogLevel.Information, Message = "Stopping: readiness answers 503; accepting for {DrainSeconds} s more, then draining in-flight requests for up to {TimeoutSeconds} s")]
        public static partial void Stopping(ILogger logger, double drainSeconds, double timeoutSeconds);
    }
}
