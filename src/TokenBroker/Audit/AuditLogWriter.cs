using System.Buffers;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Threading.Channels;
using TokenBroker.Configuration;
using TokenBroker.Hosting;

namespace TokenBroker.Audit;

/// <summary>
/// The audit log: one JSON line per event (<see cref="AuditJson"/>) on standard output or in a file, separate from
/// the application log. Requests hand events to a bounded buffer and a single background writer serialises and
/// writes them, flushing whenever the buffer runs empty, and under load at most once per flush interval. A full buffer makes the request wait (counted in
/// <c>tokenbroker.audit.blocked</c>) rather than drop an event; a write that fails is retried once after reopening
/// the sink, then counted in <c>tokenbroker.audit.write_failures</c> and reported in the application log. Disposal
/// (host shutdown) drains the buffer; events written after that go straight to the sink.
/// </summary>
internal sealed partial class AuditLogWriter : IAuditSink, IAsyncDisposable, IDisposable
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(10);

    /// <summary>At most this many events are written between two flushes (about 45 KB of exchange events).</summary>
    internal const int MaxBatch = 64;

    private readonly Channel<AuditEvent> _channel;
    private readonly AuditOutput _output;
    private readonly BrokerMetrics _metrics;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Task _loop;
    private readonly TimeSpan _flushInterval;

    /// <summary>
    /// The line being written and its JSON writer, reused for every event (used under the gate only). The writer
    /// holds nothing but managed memory and stays usable after disposal, for events written after shutdown.
    /// </summary>
    private readonly ArrayBufferWriter<byte> _line = new(1024);
    private readonly Utf8JsonWriter _json;
    private int _disposed;

    /// <summary>Events written to the output since its last successful flush (lost if that flush fails).</summary>
    private long _unflushed;

    public AuditLogWriter(AuditOptions options, BrokerMetrics metrics, ILogger<AuditLogWriter> logger)
        : this(options.Sink == "file" ? new FileAuditOutput(options.Path!) : new StreamAuditOutput(Console.OpenStandardOutput()), options.BufferCapacity, metrics, logger, options.FlushInterval)
    {
    }

    internal AuditLogWriter(AuditOutput output, int capacity, BrokerMetrics metrics, ILogger logger, TimeSpan flushInterval = default)
    {
        _output = output;
        _flushInterval = flushInterval;
        _json = new Utf8JsonWriter(_line);
        _metrics = metrics;
        _logger = logger;
        _channel = Channel.CreateBounded<AuditEvent>(new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
        _output.Reopened += () => Log.Reopened(_logger, _output.Description);
        _loop = Task.Run(WriteLoopAsync);
    }

    public void Write(AuditEvent auditEvent)
    {
        if (_channel.Writer.TryWrite(auditEvent))
        {
            return;
        }

        if (Volatile.Read(ref _disposed) == 0)
        {
            // Full: wait for room rather than lose the event. The request is slowed, never answered unaudited.
            _metrics.AuditBlocked();
            try
            {
                _channel.Writer.WriteAsync(auditEvent).AsTask().GetAwaiter().GetResult();
                return;
            }
            catch (ChannelClosedException)
            {
                // Shut down while waiting: fall through to a direct write.
            }
        }

        lock (_gate)
        {
            WriteOne(auditEvent);
            Flush();
        }
    }

    /// <summary>
    /// Drains the buffer into the output and flushes when it runs empty, or after <see cref="MaxBatch"/> events at the
    /// latest: a sink slower than the traffic keeps the buffer from ever running empty, and without the bound the
    /// writer would then never flush on its own nor check for file rotation (at the start of each batch), so every
    /// later event would go to a renamed file. After each drain the writer rests for the flush interval before it looks
    /// again: an event on a quiet broker goes out at once, while a busy one collects the events of an interval into one
    /// batch (one write, one rotation check, one wake-up of this loop) instead of waking for every few events.
    /// </summary>
    private async Task WriteLoopAsync()
    {
        var reader = _channel.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            lock (_gate)
            {
                while (reader.TryRead(out var auditEvent))
                {
                    WriteOne(auditEvent);
                    if (_unflushed >= MaxBatch)
                    {
                        Flush();
                    }
                }

                Flush();
            }

            if (_flushInterval > TimeSpan.Zero && Volatile.Read(ref _disposed) == 0)
            {
                await Task.Delay(_flushInterval).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Writes one line; on an I/O error reopens the sink and tries once more. Called under the gate.</summary>
    private void WriteOne(AuditEvent auditEvent)
    {
        _line.ResetWrittenCount();
        AuditJson.WriteLine(auditEvent, _line, _json);
        var line = _line.WrittenSpan;
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                _output.Write(line);
                _unflushed++;
                return;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
            {
                if (attempt > 0)
                {
                    _metrics.AuditWriteFailed(1);
                    Log.WriteFailed(_logger, _output.Description, auditEvent.RequestId, e.Message);
                    return;
                }

                // Reopening drops whatever the old handle still buffered.
                if (_unflushed > 0)
                {
                    _metrics.AuditWriteFailed(_unflushed);
                    Log.FlushFailed(_logger, _output.Description, _unflushed, e.Message);
                    _unflushed = 0;
                }

                _output.Reset();
            }
        }
    }

    private void Flush()
    {
        try
        {
            _output.Flush();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            // Buffered lines that did not reach the sink are lost: count every one of them.
            _metrics.AuditWriteFailed(Math.Max(1, _unflushed));
            Log.FlushFailed(_logger, _output.Description, _unflushed, e.Message);
            _output.Reset();
        }

        _unflushed = 0;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _channel.Writer.TryComplete();
        try
        {
            await _loop.WaitAsync(DrainTimeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Log.DrainTimedOut(_logger, _output.Description);
        }

        lock (_gate)
        {
            Flush();
            _output.Dispose();
        }
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private static partial class Log
    {
        [LoggerMessage(EventId = 9001, Level = LogLevel.Error, Message = "Writing the audit log ({Sink}) failed; the event of request {RequestId} is lost: {Reason}")]
        public static partial void WriteFailed(ILogger logger, string sink, string requestId, string reason);

        [LoggerMessage(EventId = 9001, Level = LogLevel.Error, Message = "Writing the audit log ({Sink}) failed; {Count} buffered event(s) are lost: {Reason}")]
        public static partial void FlushFailed(ILogger logger, string sink, long count, string reason);

        [LoggerMessage(EventId = 9002, Level = LogLevel.Information, Message = "Audit log {Sink} reopened")]
        public static partial void Reopened(ILogger logger, string sink);

        [LoggerMessage(EventId = 9003, Level = LogLevel.Error, Message = "Audit log {Sink}: shutdown did not finish writing buffered events in time")]
        public static partial void DrainTimedOut(ILogger logger, string sink);
    }
}

/// <summary>Where audit lines are written. Calls are serialised by <see cref="AuditLogWriter"/>.</summary>
internal abstract class AuditOutput : IDisposable
{
    /// <summary>Raised after the output was reopened (file rotation).</summary>
    public event Action? Reopened;

    public abstract string Description { get; }

    public abstract void Write(ReadOnlySpan<byte> line);

    public abstract void Flush();

    /// <summary>Drops the current handle so the next write opens the sink afresh.</summary>
    public virtual void Reset()
    {
    }

    public void Dispose()
    {
        Close();
        GC.SuppressFinalize(this);
    }

    /// <summary>Flushes and releases the sink.</summary>
    protected abstract void Close();

    protected void OnReopened() => Reopened?.Invoke();
}

/// <summary>A stream that stays open (standard output, or a test's buffer).</summary>
internal sealed class StreamAuditOutput(Stream stream) : AuditOutput
{
    private readonly BufferedStream _stream = new(stream, 64 * 1024);

    public override string Description => "stdout";

    public override void Write(ReadOnlySpan<byte> line) => _stream.Write(line);

    public override void Flush() => _stream.Flush();

    protected override void Close() => _stream.Flush();
}

/// <summary>
/// An append-only file, created with mode 0600. Before each batch it moves to the end of the file (so
/// <c>copytruncate</c> rotation leaves no hole) and reopens the path when the file it holds is no longer the file
/// at the path (renamed or deleted by logrotate); SIGHUP reopens it as well.
/// </summary>
internal sealed class FileAuditOutput : AuditOutput
{
    private readonly string _path;
    private readonly FileInfo _pathInfo;
    private readonly PosixSignalRegistration? _sighup;
    private FileStream? _stream;
    private volatile bool _reopenRequested;
    private bool _dirty;

    public FileAuditOutput(string path)
    {
        _path = Path.GetFullPath(path);
        _pathInfo = new FileInfo(_path);
        _stream = Open();
        if (!OperatingSystem.IsWindows())
        {
            _sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
            {
                context.Cancel = true; // SIGHUP means "reopen logs and reload rules", not "terminate"
                _reopenRequested = true;
            });
        }
    }

    public override string Description => _path;

    /// <summary>Asks for a reopen before the next write, as SIGHUP does (tests).</summary>
    internal void RequestReopen() => _reopenRequested = true;

    public override void Write(ReadOnlySpan<byte> line)
    {
        var reopened = false;
        if (_stream is null || _reopenRequested)
        {
            Reopen();
            reopened = true;
        }

        if (!_dirty)
        {
            // Start of a batch: append at the real end even if someone truncated the file (copytruncate). The
            // handle's length is read once (fstat) and serves both the rotation check and the position.
            var length = LengthOrMinusOne(_stream!);
            if (!reopened && IsRotated(length))
            {
                Reopen();
                length = LengthOrMinusOne(_stream!);
            }

            if (length < 0)
            {
                _stream!.Seek(0, SeekOrigin.End); // let the stream report the error (WriteOne reopens and retries)
            }
            else
            {
                _stream!.Position = length;
            }

            _dirty = true;
        }

        _stream!.Write(line);
    }

    public override void Flush()
    {
        _stream?.Flush(flushToDisk: false);
        _dirty = false;
    }

    public override void Reset()
    {
        try
        {
            _stream?.Dispose();
        }
        catch (IOException)
        {
            // The handle is being dropped anyway.
        }

        _stream = null;
        _dirty = false;
    }

    protected override void Close()
    {
        _sighup?.Dispose();
        Reset();
    }

    private void Reopen()
    {
        var wasOpen = _stream is not null;
        Reset();
        _reopenRequested = false;
        _stream = Open();
        if (wasOpen)
        {
            OnReopened();
        }
    }

    /// <summary>
    /// True when the path no longer names the file this handle writes, whose length is
    /// <paramref name="handleLength"/> (-1 when it could not be read): deleted, or replaced by a file of another
    /// length (a rotated-in new file). The length comparison is a heuristic that needs no inode access; a new file
    /// that happens to have the same length is caught at the next batch, and SIGHUP is exact. One <c>stat</c> of the
    /// path through a reused <see cref="FileInfo"/>.
    /// </summary>
    private bool IsRotated(long handleLength)
    {
        _pathInfo.Refresh();
        return handleLength < 0 || !_pathInfo.Exists || _pathInfo.Length != handleLength;
    }

    private static long LengthOrMinusOne(FileStream stream)
    {
        try
        {
            return RandomAccess.GetLength(stream.SafeFileHandle);
        }
        catch (IOException)
        {
            return -1;
        }
    }

    private FileStream Open()
    {
        var options = new FileStreamOptions
        {
            Mode = FileMode.OpenOrCreate, // not Append: that forbids seeking to a truncated end
            Access = FileAccess.Write,
            Share = FileShare.ReadWrite | FileShare.Delete,
            BufferSize = 64 * 1024,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        return new FileStream(_path, options);
    }
}
