using System.Diagnostics.Metrics;

namespace TokenBroker.Hosting;

/// <summary>The broker's meter (<c>TokenBroker</c>), for any System.Diagnostics.Metrics listener or exporter.</summary>
internal sealed class BrokerMetrics : IDisposable
{
    public const string MeterName = "TokenBroker";

    public Meter Meter { get; } = new(MeterName);

    public void Dispose() => Meter.Dispose();
}
