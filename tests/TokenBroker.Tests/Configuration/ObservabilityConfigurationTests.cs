using TokenBroker.Hosting;

namespace TokenBroker.Tests.Configuration;

/// <summary>Audit and Telemetry settings are validated at start-up, every error at once.</summary>
[TestFixture]
public sealed class ObservabilityConfigurationTests
{
    private static BrokerBuildResult Build(Dictionary<string, string?> settings) =>
        BrokerApp.Build(new BrokerAppOptions { Overrides = settings, MinimumLogLevel = LogLevel.None });

    private static IEnumerable<TestCaseData> InvalidSettings()
    {
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Audit:Sink"] = "syslog" }, "Audit:Sink 'syslog' must be 'stdout' or 'file'").SetName("UnknownSink");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Audit:Sink"] = "file" }, "Audit:Path is required").SetName("FileSinkWithoutPath");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Audit:Path"] = "/tmp/audit.log" }, "Audit:Path is only used with Audit:Sink 'file'").SetName("PathWithStdoutSink");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Audit:Sink"] = "file", ["TokenBroker:Audit:Path"] = "/no/such/dir/audit.log" }, "the directory does not exist").SetName("FileInMissingDirectory");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Audit:BufferCapacity"] = "10" }, "Audit:BufferCapacity").SetName("TinyBuffer");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Audit:FlushInterval"] = "00:00:02" }, "Audit:FlushInterval must be between 0 and 1 second").SetName("FlushIntervalTooLong");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Audit:FlushInterval"] = "-00:00:00.001" }, "Audit:FlushInterval must be between 0 and 1 second").SetName("NegativeFlushInterval");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Telemetry:Protocol"] = "udp" }, "Telemetry:Protocol").SetName("UnknownProtocol");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Telemetry:OtlpEndpoint"] = "collector:4318" }, "Telemetry:OtlpEndpoint").SetName("RelativeEndpoint");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Telemetry:OtlpEndpoint"] = "http://user:pw@collector:4318" }, "Telemetry:OtlpEndpoint").SetName("EndpointWithUserInfo");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Telemetry:MetricExportInterval"] = "00:00:00.100" }, "Telemetry:MetricExportInterval").SetName("TooFrequentExport");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Telemetry:ServiceName"] = "" }, "Telemetry:ServiceName").SetName("EmptyServiceName");
    }

    [TestCaseSource(nameof(InvalidSettings))]
    public void InvalidObservabilitySetting_StopsStartUpWithAClearError(Dictionary<string, string?> settings, string expected)
    {
        var built = Build(settings);

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains(expected));
    }

    [Test]
    public void SeveralBadObservabilitySettings_AreAllReportedAtOnce()
    {
        var built = Build(new() { ["TokenBroker:Audit:Sink"] = "syslog", ["TokenBroker:Telemetry:Protocol"] = "udp" });

        Assert.That(built.Errors, Has.Some.Contains("Audit:Sink").And.Some.Contains("Telemetry:Protocol"));
    }

    [Test]
    public void AuditPathThatIsADirectory_StopsStartUp()
    {
        var dir = Directory.CreateTempSubdirectory("tb-audit-ro-").FullName;
        try
        {
            var path = Path.Combine(dir, "audit.log");
            Directory.CreateDirectory(path);
            var built = Build(new() { ["TokenBroker:Audit:Sink"] = "file", ["TokenBroker:Audit:Path"] = path });

            Assert.That(built.App, Is.Null);
            Assert.That(built.Errors, Has.Some.Contains("Audit:Path"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
