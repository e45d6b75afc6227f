using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using TokenBroker.Demo;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Observability;

/// <summary>A real OTLP http/protobuf export to a collector stand-in (Kestrel on loopback), not a mocked exporter.</summary>
[TestFixture]
public sealed class OtlpExportTests
{
    private sealed record Received(string Path, string? ContentType, int Length, byte[] Body)
    {
        /// <summary>Names in OTLP protobuf (metric, span and scope names) are length-prefixed UTF-8 strings: searchable as bytes.</summary>
        public bool Mentions(string name) => Body.AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes(name)) >= 0;
    }

    [Test]
    public async Task WithOtlpEndpoint_MetricsAndTraces_ArePostedAsProtobufToTheCollector()
    {
        var received = new ConcurrentQueue<Received>();
        var collectorUrl = $"http://127.0.0.1:{FakeCiIssuer.FreePort()}";
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(collectorUrl);
        await using var collector = builder.Build();
        collector.MapPost("/v1/{signal}", async (string signal, HttpContext http) =>
        {
            using var body = new MemoryStream();
            await http.Request.Body.CopyToAsync(body);
            received.Enqueue(new Received("/v1/" + signal, http.Request.ContentType, (int)body.Length, body.ToArray()));
            return Results.Ok();
        });
        await collector.StartAsync();

        await using (var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?>
        {
            ["TokenBroker:Telemetry:OtlpEndpoint"] = collectorUrl + "/",
            ["TokenBroker:Telemetry:Protocol"] = "http/protobuf",
            ["TokenBroker:Telemetry:ServiceName"] = "tokenbroker-test",
            ["TokenBroker:Telemetry:MetricExportInterval"] = "00:00:01",
        }))
        {
            var response = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
            Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);

            // The periodic reader exports every second; traces are flushed when the broker stops at the latest.
            var clock = Stopwatch.StartNew();
            while (!received.Any(r => r.Path == "/v1/metrics" && r.Mentions("dotnet.gc.collections")) && clock.Elapsed < TimeSpan.FromSeconds(15))
            {
                await Task.Delay(100);
            }
        }

        Assert.That(received.Where(r => r.Path == "/v1/metrics"), Is.Not.Empty, "metrics were exported");
        Assert.That(received.Where(r => r.Path == "/v1/traces"), Is.Not.Empty, "traces were exported (at the latest on shutdown)");
        Assert.That(received, Has.All.Matches<Received>(r => r.ContentType == "application/x-protobuf" && r.Length > 0));
        var metrics = received.Where(r => r.Path == "/v1/metrics").ToList();
        var traces = received.Where(r => r.Path == "/v1/traces").ToList();
        Assert.Multiple(() =>
        {
            Assert.That(metrics.Any(r => r.Mentions("tokenbroker.exchanges")), Is.True, "the broker's meter");
            Assert.That(metrics.Any(r => r.Mentions("http.server.request.duration")), Is.True, "ASP.NET Core's meter");
            Assert.That(metrics.Any(r => r.Mentions("dotnet.gc.collections")), Is.True, "the runtime's meter");
            Assert.That(traces.Any(r => r.Mentions("Microsoft.AspNetCore")), Is.True, "ASP.NET Core's request span (created although its log category is off)");
            Assert.That(traces.Any(r => r.Mentions("exchange")), Is.True, "the broker's exchange span");
        });
    }

    [Test]
    public async Task WithoutOtlpEndpoint_NoExporterIsCreated()
    {
        await using var broker = await BrokerHarness.StartAsync();

        Assert.That(broker.App.Services.GetService<TokenBroker.Hosting.OtlpTelemetry>(), Is.Null);
    }
}
