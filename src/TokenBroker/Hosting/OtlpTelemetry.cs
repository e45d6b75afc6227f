using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using TokenBroker.Configuration;

namespace TokenBroker.Hosting;

/// <summary>
/// OTLP export of the broker's meter and activity source (plus ASP.NET Core's request metrics and activities) when
/// <c>Telemetry:OtlpEndpoint</c> is set. The providers are built with the SDK directly (no hosting package) and
/// disposed with the host, which flushes what is buffered.
/// </summary>
internal sealed class OtlpTelemetry : IDisposable
{
    /// <summary>Meters exported besides the broker's own: HTTP server request duration and Kestrel connections.</summary>
    internal static readonly string[] FrameworkMeters = ["Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel", "System.Runtime"];

    private readonly MeterProvider _meters;
    private readonly TracerProvider? _tracer;

    private OtlpTelemetry(MeterProvider meters, TracerProvider? tracer)
    {
        _meters = meters;
        _tracer = tracer;
    }

    public static OtlpTelemetry Start(TelemetryOptions options)
    {
        var endpoint = options.OtlpEndpoint!.TrimEnd('/');
        var protocol = options.Protocol == "grpc" ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;

        // With http/protobuf an endpoint set in code is used as is, so the signal path is added here.
        Uri For(string signal) => new(protocol == OtlpExportProtocol.HttpProtobuf ? $"{endpoint}/v1/{signal}" : endpoint);

        var version = typeof(OtlpTelemetry).Assembly.GetName().Version?.ToString();
        var meters = Sdk.CreateMeterProviderBuilder()
            .ConfigureResource(r => r.AddService(options.ServiceName, serviceVersion: version))
            .AddMeter([BrokerMetrics.MeterName, .. FrameworkMeters])
            .AddOtlpExporter((exporter, reader) =>
            {
                exporter.Endpoint = For("metrics");
                exporter.Protocol = protocol;
                reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = (int)options.MetricExportInterval.TotalMilliseconds;
            })
            .Build();
        TracerProvider? tracer = null;
        if (options.Traces)
        {
            tracer = Sdk.CreateTracerProviderBuilder()
                .ConfigureResource(r => r.AddService(options.ServiceName, serviceVersion: version))
                .AddSource(BrokerTracing.SourceName, "Microsoft.AspNetCore")
                .AddOtlpExporter(exporter =>
                {
                    exporter.Endpoint = For("traces");
                    exporter.Protocol = protocol;
                })
                .Build();
        }

        return new OtlpTelemetry(meters, tracer);
    }

    public void Dispose()
    {
        _tracer?.Dispose();
        _meters.Dispose();
    }
}
