using System.Diagnostics.Metrics;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using TokenBroker.Audit;
using TokenBroker.Configuration;
using TokenBroker.Hosting;

namespace TokenBroker.Tests.Audit;

/// <summary>The audit writer: one JSON line per event, hostile values cannot break a line, file handling for rotation.</summary>
[TestFixture]
public sealed class AuditLogWriterTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("tb-audit-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private string AuditPath => Path.Combine(_dir, "audit.log");

    private static AuditEvent Event(string requestId, string? repository = null) => new()
    {
        Type = "exchange",
        RequestId = requestId,
        Time = DateTimeOffset.UnixEpoch,
        Repository = repository,
        Outcome = "refused",
        ErrorId = "TB1201",
    };

    private AuditLogWriter FileWriter(BrokerMetrics metrics, int capacity = 100) =>
        new(new AuditOptions { Sink = "file", Path = AuditPath, BufferCapacity = capacity }, metrics, NullLogger<AuditLogWriter>.Instance);

    private string[] Lines() => File.ReadAllText(AuditPath).Split('\n', StringSplitOptions.RemoveEmptyEntries);

    private static IEnumerable<TestCaseData> HostileValues()
    {
        yield return new TestCaseData("acme/app\r\n{\"type\":\"exchange\",\"outcome\":\"issued\"}").SetName("CrLfWithAForgedEvent");
        yield return new TestCaseData("acme/app\n").SetName("TrailingLineFeed");
        yield return new TestCaseData("acme/\u001b[2J\u001b[31mapp").SetName("AnsiEscapeSequences");
        yield return new TestCaseData("acme/\u2028app\u2029").SetName("UnicodeLineAndParagraphSeparators");
        yield return new TestCaseData("acme/\u0085app\u0000").SetName("NextLineAndNul");
        yield return new TestCaseData("acme/\"},\"outcome\":\"issued").SetName("QuoteBreakout");
    }

    [TestCaseSource(nameof(HostileValues))]
    public void HostileClaimValue_StaysInsideOneLineOfPrintableAscii_AndRoundTrips(string repository)
    {
        var line = AuditJson.ToLine(Event("req_1", repository));

        Assert.That(line[^1], Is.EqualTo((byte)'\n'));
        Assert.That(line[..^1], Has.All.InRange((byte)0x20, (byte)0x7E), "only printable ASCII before the newline");
        using var parsed = JsonDocument.Parse(line);
        Assert.That(parsed.RootElement.GetProperty("repository").GetString(), Is.EqualTo(repository));
        Assert.That(parsed.RootElement.GetProperty("outcome").GetString(), Is.EqualTo("refused"));
    }

    [Test]
    public void UnpairedSurrogates_AreReplaced_AndTheEventIsStillWrittenInFull()
    {
        var line = AuditJson.ToLine(Event("req_1", "acme/\ud800app\udc00"));

        Assert.That(line[..^1], Has.All.InRange((byte)0x20, (byte)0x7E));
        using var parsed = JsonDocument.Parse(line);
        Assert.That(parsed.RootElement.GetProperty("repository").GetString(), Is.EqualTo("acme/\ufffdapp\ufffd"));
        Assert.That(parsed.RootElement.TryGetProperty("audit_error", out _), Is.False);
    }

    [Test]
    public async Task FileSink_IsCreatedWithMode0600_AndAppendsOneLinePerEvent()
    {
        File.WriteAllText(AuditPath, "{\"earlier\":true}\n");
        var fresh = Path.Combine(_dir, "fresh.log");
        using var metrics = new BrokerMetrics();
        await using (var writer = FileWriter(metrics))
        {
            writer.Write(Event("req_1"));
            writer.Write(Event("req_2"));
        }

        await using (var created = new AuditLogWriter(new AuditOptions { Sink = "file", Path = fresh }, metrics, NullLogger<AuditLogWriter>.Instance))
        {
            created.Write(Event("req_3"));
        }

        Assert.That(Lines(), Has.Length.EqualTo(3));
        Assert.That(Lines()[0], Is.EqualTo("{\"earlier\":true}"), "existing content is kept");
        Assert.That(Lines()[1..].Select(l => JsonDocument.Parse(l).RootElement.GetProperty("request_id").GetString()), Is.EqualTo(new[] { "req_1", "req_2" }));
        if (!OperatingSystem.IsWindows())
        {
            Assert.That(File.GetUnixFileMode(fresh), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        }
    }

    [Test]
    public async Task FileSink_AfterRenameRotation_WritesToANewFileAtThePath()
    {
        using var metrics = new BrokerMetrics();
        await using var writer = FileWriter(metrics);
        writer.Write(Event("req_before"));
        await WaitForAsync(() => File.Exists(AuditPath) && Lines().Length == 1);

        File.Move(AuditPath, AuditPath + ".1");
        writer.Write(Event("req_after"));
        await WaitForAsync(() => File.Exists(AuditPath) && Lines().Length == 1);

        Assert.That(Lines()[0], Does.Contain("req_after"));
        Assert.That(File.ReadAllText(AuditPath + ".1"), Does.Contain("req_before").And.Not.Contain("req_after"));
    }

    [Test]
    public async Task FileSink_RenamedWhileTheBufferNeverRunsEmpty_NewEventsReachTheNewFileWithinOneBatch()
    {
        // A sink slower than the traffic (1 ms per line here, with a backlog of 8,000 events) keeps the buffer from
        // running empty, so only the batch bound (MaxBatch events) brings the rotation check round again: without it
        // the new file would appear only after the whole backlog had gone to the renamed one.
        using var metrics = new BrokerMetrics();
        var slow = new SlowOutput(new FileAuditOutput(AuditPath));
        await using var writer = new AuditLogWriter(slow, 10_000, metrics, NullLogger.Instance);
        const int total = 8_000;
        for (var i = 1; i <= total; i++)
        {
            writer.Write(Event($"req_{i}"));
        }

        await WaitForAsync(() => File.Exists(AuditPath) && new FileInfo(AuditPath).Length > 0);
        File.Move(AuditPath, AuditPath + ".1");
        await WaitForAsync(() => File.Exists(AuditPath) && new FileInfo(AuditPath).Length > 0);
        var onDisk = File.ReadAllLines(AuditPath + ".1").Length + File.ReadAllLines(AuditPath).Length;
        Assert.That(onDisk, Is.LessThan(total / 2), "the new file appeared while most of the backlog was still to be written");

        slow.Delay = false;
        await writer.DisposeAsync();
        var lines = File.ReadAllLines(AuditPath + ".1").Concat(File.ReadAllLines(AuditPath)).ToArray();
        Assert.That(lines, Has.Length.EqualTo(total), "every event is in one of the two files");
        Assert.That(lines.Distinct().Count(), Is.EqualTo(total));
        Assert.That(File.ReadAllText(AuditPath + ".1"), Does.Contain("\"req_1\"").And.Not.Contain($"\"req_{total}\""));
    }

    [TestCase(0)]
    [TestCase(2)]
    public async Task UnderConstantLoad_NoWriteCarriesMoreThanMaxBatchEvents_AndEveryEventArrives(int flushIntervalMs)
    {
        using var metrics = new BrokerMetrics();
        var counting = new LinesPerFlushStream();
        var writer = new AuditLogWriter(new StreamAuditOutput(counting), 10_000, metrics, NullLogger.Instance, TimeSpan.FromMilliseconds(flushIntervalMs));
        await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            for (var i = 0; i < 2_000; i++)
            {
                writer.Write(Event($"req_{t}_{i}"));
            }
        })));
        await writer.DisposeAsync();

        var lines = Encoding.UTF8.GetString(counting.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(8_000));
        Assert.That(lines.Distinct().Count(), Is.EqualTo(8_000));
        Assert.That(counting.Flushes, Has.All.LessThanOrEqualTo(AuditLogWriter.MaxBatch));
        Assert.That(counting.Flushes.Sum(), Is.EqualTo(8_000), "every line went out with a flush");
    }

    [Test]
    public async Task QuietWriter_FlushesEachEventOnItsOwn()
    {
        using var metrics = new BrokerMetrics();
        var counting = new LinesPerFlushStream();
        await using var writer = new AuditLogWriter(new StreamAuditOutput(counting), 100, metrics, NullLogger.Instance);
        for (var i = 1; i <= 3; i++)
        {
            writer.Write(Event($"req_{i}"));
            await WaitForAsync(() => counting.Flushes.Sum() == i);
        }

        Assert.That(counting.Flushes, Is.EqualTo(new[] { 1, 1, 1 }), "an event on an idle broker is not held back for company");
    }

    [Test]
    public async Task BusyWriter_WithAFlushInterval_HoldsTheNextEventsForTheRestOfTheInterval_ThenWritesThemTogether()
    {
        using var metrics = new BrokerMetrics();
        var counting = new LinesPerFlushStream();
        await using var writer = new AuditLogWriter(new StreamAuditOutput(counting), 100, metrics, NullLogger.Instance, TimeSpan.FromMilliseconds(500));
        writer.Write(Event("req_1"));
        await WaitForAsync(() => counting.Flushes.Sum() == 1);

        // The writer now rests for the interval: events arriving meanwhile wait for its end and go out as one batch.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        writer.Write(Event("req_2"));
        writer.Write(Event("req_3"));
        await WaitForAsync(() => counting.Flushes.Sum() == 3);
        Assert.That(clock.Elapsed, Is.GreaterThan(TimeSpan.FromMilliseconds(300)), "held until the interval ended");
        Assert.That(counting.Flushes, Is.EqualTo(new[] { 1, 2 }));
    }

    [Test]
    public async Task QuietWriter_WithAFlushInterval_StillWritesEachEventAtOnce()
    {
        using var metrics = new BrokerMetrics();
        var counting = new LinesPerFlushStream();
        await using var writer = new AuditLogWriter(new StreamAuditOutput(counting), 100, metrics, NullLogger.Instance, TimeSpan.FromMilliseconds(2));
        for (var i = 1; i <= 3; i++)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            writer.Write(Event($"req_{i}"));
            await WaitForAsync(() => counting.Flushes.Sum() == i);
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(1)));
            await Task.Delay(50);
        }

        Assert.That(counting.Flushes, Is.EqualTo(new[] { 1, 1, 1 }), "an event after a quiet spell is not held back for company");
    }

    [Test]
    public async Task FileSink_AfterCopyTruncate_AppendsAtTheStartWithoutAHole()
    {
        using var metrics = new BrokerMetrics();
        await using var writer = FileWriter(metrics);
        writer.Write(Event("req_before"));
        await WaitForAsync(() => File.Exists(AuditPath) && Lines().Length == 1);

        File.Copy(AuditPath, AuditPath + ".1");
        using (var truncate = new FileStream(AuditPath, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            truncate.SetLength(0);
        }

        writer.Write(Event("req_after"));
        await WaitForAsync(() => new FileInfo(AuditPath).Length > 0);

        var bytes = File.ReadAllBytes(AuditPath);
        Assert.That(bytes, Has.None.EqualTo((byte)0), "no NUL-filled hole where the old content was");
        Assert.That(Encoding.UTF8.GetString(bytes), Does.StartWith("{\"type\":\"exchange\",\"request_id\":\"req_after\""));
    }

    [Test]
    public async Task FileSink_OnReopenRequest_LikeSighup_ReopensThePath()
    {
        using var metrics = new BrokerMetrics();
        var output = new FileAuditOutput(AuditPath);
        var reopened = 0;
        output.Reopened += () => reopened++;
        await using var writer = new AuditLogWriter(output, 100, metrics, NullLogger.Instance);
        writer.Write(Event("req_1"));
        await WaitForAsync(() => File.Exists(AuditPath) && Lines().Length == 1);

        output.RequestReopen();
        writer.Write(Event("req_2"));
        await WaitForAsync(() => Lines().Length == 2);

        Assert.That(reopened, Is.EqualTo(1));
    }

    [Test]
    public async Task Dispose_DrainsEveryBufferedEvent_AndAFullBufferBlocksInsteadOfDropping()
    {
        using var metrics = new BrokerMetrics();
        var blocked = 0L;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter) && instrument.Name == "tokenbroker.audit.blocked")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref blocked, value));
        listener.Start();

        var slow = new SlowStream();
        var writer = new AuditLogWriter(new StreamAuditOutput(slow), 100, metrics, NullLogger.Instance);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            for (var i = 0; i < 500; i++)
            {
                writer.Write(Event($"req_{t}_{i}"));
            }
        })));
        await writer.DisposeAsync();

        var lines = Encoding.UTF8.GetString(slow.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(2000));
        Assert.That(lines.Distinct().Count(), Is.EqualTo(2000));
        Assert.That(Interlocked.Read(ref blocked), Is.GreaterThan(0), "with 2,000 events into a buffer of 100 some requests had to wait");

        // After shutdown an event is written directly rather than lost.
        writer.Write(Event("req_late"));
        Assert.That(Encoding.UTF8.GetString(slow.ToArray()), Does.Contain("req_late"));
    }

    [Test]
    public async Task SinkThatCannotBeWritten_CountsEveryLostEvent()
    {
        Assert.That(File.Exists("/dev/full"), "the test needs /dev/full (Linux)");

        using var metrics = new BrokerMetrics();
        var failures = 0L;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter) && instrument.Name == "tokenbroker.audit.write_failures")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref failures, value));
        listener.Start();

        // /dev/full accepts the open and fails every write with ENOSPC, as a full disk does.
        await using (var writer = new AuditLogWriter(new AuditOptions { Sink = "file", Path = "/dev/full" }, metrics, NullLogger<AuditLogWriter>.Instance))
        {
            for (var i = 0; i < 5; i++)
            {
                writer.Write(Event($"req_{i}"));
            }
        }

        Assert.That(Interlocked.Read(ref failures), Is.EqualTo(5));
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(10)), "timed out waiting for the audit writer");
            await Task.Delay(20);
        }
    }

    /// <summary>An output that takes about a millisecond per line while <see cref="Delay"/> is set.</summary>
    private sealed class SlowOutput(AuditOutput inner) : AuditOutput
    {
        public volatile bool Delay = true;

        public override string Description => inner.Description;

        public override void Write(ReadOnlySpan<byte> line)
        {
            if (Delay)
            {
                Thread.Sleep(1);
            }

            inner.Write(line);
        }

        public override void Flush() => inner.Flush();

        public override void Reset() => inner.Reset();

        protected override void Close() => inner.Dispose();
    }

    /// <summary>A memory stream that records how many lines each flush carried (flushes without new lines are not recorded).</summary>
    private sealed class LinesPerFlushStream : MemoryStream
    {
        private readonly Lock _gate = new();
        private readonly List<int> _flushes = [];
        private long _flushedLength;

        public int[] Flushes
        {
            get
            {
                lock (_gate)
                {
                    return [.. _flushes];
                }
            }
        }

        public override void Flush()
        {
            lock (_gate)
            {
                var lines = GetBuffer().AsSpan((int)_flushedLength, (int)(Length - _flushedLength)).Count((byte)'\n');
                if (lines > 0)
                {
                    _flushes.Add(lines);
                }

                _flushedLength = Length;
            }
        }
    }

    /// <summary>A memory stream that takes a little time per write and flush, so the buffer fills.</summary>
    private sealed class SlowStream : MemoryStream
    {
        public override void Flush()
        {
            Thread.Sleep(5);
            base.Flush();
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            Thread.Sleep(1);
            base.Write(buffer, offset, count);
        }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            Thread.Sleep(1);
            base.Write(buffer);
        }
    }
}
