using System.Buffers;
using System.Buffers.Text;
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;

namespace TokenBroker.State.Redis;

/// <summary>One reply of the Redis protocol (RESP2), as far as the exchange's write needs it.</summary>
internal readonly record struct RespReply(RespKind Kind, long Integer, string? Text)
{
    public static readonly RespReply Nil = new(RespKind.Nil, 0, null);

    public static readonly RespReply Ok = new(RespKind.Simple, 0, "OK");

    public bool IsOk => Kind == RespKind.Simple && Text == "OK";
}

internal enum RespKind
{
    Simple,
    Error,
    Integer,
    Bulk,
    Nil,
    Array,
}

/// <summary>One argument of a command: text (sent as UTF-8) or bytes.</summary>
internal readonly struct RespArg
{
    private RespArg(string? text, byte[]? bytes)
    {
        Text = text;
        Bytes = bytes;
    }

    public string? Text { get; }

    public byte[]? Bytes { get; }

    public static implicit operator RespArg(string text) => new(text, null);

    public static implicit operator RespArg(byte[] bytes) => new(null, bytes);

    public int MaxLength => Bytes?.Length ?? Encoding.UTF8.GetMaxByteCount(Text!.Length);
}

/// <summary>An error reply from Redis (<c>-ERR ...</c>, <c>-READONLY ...</c>, <c>-NOPERM ...</c>).</summary>
internal sealed class RedisReplyException(string message) : Exception(message);

/// <summary>
/// A pipelined connection to one Redis node, for the exchange's write. When no other command is waiting for its
/// reply, the calling thread writes at once; otherwise the write is queued to the thread pool, and the callers that
/// append meanwhile share it (while one write runs, others append to the next batch), so a busy broker sends many
/// commands per system call and Redis reads them in one. One receive
/// loop matches replies to commands strictly in order, as Redis answers them. StackExchange.Redis 1.x instead hands
/// every command to its own writer thread, which cost the exchange a thread wake-up per call.
/// <para>
/// Anything unexpected (a malformed or unrequested reply, a closed or failed socket, a command left unanswered for
/// <c>staleAfter</c>) breaks the connection: every command still waiting fails with <see cref="IOException"/>, and
/// the owner opens a new connection. A command whose caller gave up (timeout) keeps its place in the queue, so that
/// the order of replies is never lost.
/// </para>
/// </summary>
internal sealed class RespPipe : IDisposable, IThreadPoolWorkItem
{
    // Replies on this path are small (OK, nil, integers, short errors); a larger one is a protocol violation.
    private const int MaxReplyBytes = 64 * 1024;

    private readonly Stream _stream;
    private readonly Socket _socket;
    private readonly long _staleAfterTicks;
    private readonly long _answerTimeoutTicks;
    private readonly TimeSpan _answerTimeout;
    private readonly Timer _sweep;
    private readonly object _lock = new();
    private readonly Queue<Waiter> _waiting = new();
    private byte[] _out = new byte[4096];
    private int _outLength;
    private byte[] _spare = new byte[4096];
    private bool _writing;
    private Exception? _broken;

    private RespPipe(Socket socket, Stream stream, EndPoint endPoint, TimeSpan staleAfter, TimeSpan? answerTimeout)
    {
        _socket = socket;
        _stream = stream;
        EndPoint = endPoint;
        _staleAfterTicks = (long)(staleAfter.TotalSeconds * Stopwatch.Frequency);
        _answerTimeout = answerTimeout ?? Timeout.InfiniteTimeSpan;
        _answerTimeoutTicks = answerTimeout is { } timeout ? (long)(timeout.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        // One timer per connection instead of one per command: a command fails between 1 and 1.25 times the
        // answer timeout after it was sent, and the connection breaks within a quarter more than staleAfter.
        var period = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(5).Ticks, (answerTimeout ?? staleAfter).Ticks / 4));
        _sweep = new Timer(static pipe => ((RespPipe)pipe!).Sweep(), this, period, period);
    }

    /// <summary>Why the connection broke, or null while it works.</summary>
    public Exception? Broken => Volatile.Read(ref _broken);

    /// <summary>Whether the connection runs over TLS.</summary>
    public bool IsTls => _stream is SslStream;

    /// <summary>The node this pipe was opened to, as configured (a name stays a name).</summary>
    public EndPoint EndPoint { get; }

    /// <summary>
    /// Connects (with TLS when <paramref name="tls"/> is set, validating the node's certificate for its host name or
    /// address by <see cref="RedisTls"/>'s policy), authenticates when there is a password, names the client, and
    /// starts the receive loop. With an <paramref name="answerTimeout"/>, a command left unanswered that long fails
    /// with <see cref="TimeoutException"/> (it keeps its place in the queue, so the replies after it still reach
    /// their callers).
    /// </summary>
    public static async Task<RespPipe> ConnectAsync(EndPoint endPoint, string? password, RedisTls? tls, string clientName, TimeSpan connectTimeout, TimeSpan staleAfter, TimeSpan? answerTimeout = null)
    {
        using var deadline = new CancellationTokenSource(connectTimeout);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Stream? stream = null;
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            socket.SendTimeout = (int)Math.Max(1, staleAfter.TotalMilliseconds);
            await socket.ConnectAsync(endPoint, deadline.Token).ConfigureAwait(false);
            stream = new NetworkStream(socket, ownsSocket: false);
            if (tls is not null)
            {
                var secure = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = secure;
                var host = endPoint switch
                {
                    DnsEndPoint dns => dns.Host,
                    IPEndPoint ip => ip.Address.ToString(),
                    _ => throw new ArgumentException("a Redis node is a host name or an IP address", nameof(endPoint)),
                };
                await secure.AuthenticateAsClientAsync(tls.ClientOptions(host), deadline.Token).ConfigureAwait(false);
            }

            var pipe = new RespPipe(socket, stream, endPoint, staleAfter, answerTimeout);
            _ = pipe.ReceiveLoopAsync();
            RespArg[][] hello = password is null
                ? [["CLIENT", "SETNAME", clientName]]
                : [["AUTH", password], ["CLIENT", "SETNAME", clientName]];
            RespReply[] replies;
            try
            {
                replies = await pipe.SendAsync(hello).WaitAsync(deadline.Token).ConfigureAwait(false);
            }
            catch
            {
                pipe.Dispose();
                throw;
            }

            foreach (var reply in replies)
            {
                if (!reply.IsOk)
                {
                    pipe.Dispose();
                    throw new RedisReplyException($"redis refused the connection set-up: {reply.Text}");
                }
            }

            return pipe;
        }
        catch (Exception e)
        {
            stream?.Dispose();
            socket.Dispose();
            if (e is OperationCanceledException)
            {
                throw new TimeoutException($"connecting to redis at {endPoint} took longer than {connectTimeout.TotalMilliseconds} ms", e);
            }

            throw;
        }
    }

    /// <summary>
    /// Sends commands back to back (Redis runs them in this order); the task completes with their replies, error
    /// replies included, or fails with <see cref="IOException"/> when the connection breaks first.
    /// </summary>
    public Task<RespReply[]> SendAsync(ReadOnlySpan<RespArg[]> commands)
    {
        var waiter = new Waiter(commands.Length, Stopwatch.GetTimestamp());
        bool write, othersWaiting;
        lock (_lock)
        {
            if (_broken is not null)
            {
                return Task.FromException<RespReply[]>(new IOException("the redis connection is broken: " + _broken.Message, _broken));
            }

            foreach (var command in commands)
            {
                Encode(command);
            }

            othersWaiting = _waiting.Count > 0;
            _waiting.Enqueue(waiter);
            write = !_writing;
            _writing |= write;
        }

        if (write)
        {
            if (othersWaiting)
            {
                // Redis is still answering earlier commands: queue the write behind the work already waiting for
                // the thread pool, so that the exchanges that reach their write meanwhile share one send (and
                // Redis one read). Under load this cut the server's system calls per exchange by about five.
                ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
            }
            else
            {
                Flush();
            }
        }

        return waiter.Task;
    }

    public void Dispose() => Fail(new ObjectDisposedException(nameof(RespPipe)));

    // Fails the commands waiting longer than the answer timeout, oldest first (the queue is in send order), and
    // breaks the connection once the oldest has waited past staleAfter.
    private void Sweep()
    {
        var now = Stopwatch.GetTimestamp();
        lock (_lock)
        {
            if (_broken is not null)
            {
                return;
            }

            if (_waiting.TryPeek(out var oldest) && now - oldest.SentAt > _staleAfterTicks)
            {
                // Redis has not answered for longer than any budget: a dead peer (no reset), not a slow one.
                FailLocked(new TimeoutException("redis left a command unanswered; the connection is presumed dead"));
                return;
            }

            foreach (var waiter in _waiting)
            {
                if (now - waiter.SentAt <= _answerTimeoutTicks)
                {
                    break;
                }

                if (waiter.Task.IsCompleted)
                {
                    continue; // failed by an earlier sweep; it keeps its place until its reply arrives
                }

                // Continuations run asynchronously (the waiter's option), so nothing runs under this lock.
                waiter.TrySetException(new TimeoutException($"no answer within {_answerTimeout.TotalMilliseconds} ms"));
            }
        }
    }

    private void Encode(RespArg[] arguments)
    {
        var need = 16;
        foreach (var argument in arguments)
        {
            need += 16 + argument.MaxLength;
        }

        if (_out.Length - _outLength < need)
        {
            Array.Resize(ref _out, Math.Max(_out.Length * 2, _outLength + need));
        }

        var span = _out.AsSpan(_outLength);
        var at = 0;
        span[at++] = (byte)'*';
        at += Line(span[at..], arguments.Length);
        foreach (var argument in arguments)
        {
            span[at++] = (byte)'$';
            if (argument.Bytes is { } bytes)
            {
                at += Line(span[at..], bytes.Length);
                bytes.CopyTo(span[at..]);
                at += bytes.Length;
            }
            else
            {
                at += Line(span[at..], Encoding.UTF8.GetByteCount(argument.Text!));
                at += Encoding.UTF8.GetBytes(argument.Text, span[at..]);
            }

            span[at++] = (byte)'\r';
            span[at++] = (byte)'\n';
        }

        _outLength += at;

        static int Line(Span<byte> to, int value)
        {
            Utf8Formatter.TryFormat(value, to, out var written);
            to[written] = (byte)'\r';
            to[written + 1] = (byte)'\n';
            return written + 2;
        }
    }

    void IThreadPoolWorkItem.Execute() => Flush();

    // One writer at a time (_writing): it swaps the filled buffer for the spare one and writes outside the lock, so
    // callers keep appending meanwhile; it stops when a swap finds nothing new.
    private void Flush()
    {
        while (true)
        {
            byte[] batch;
            int length;
            lock (_lock)
            {
                if (_outLength == 0 || _broken is not null)
                {
                    _writing = false;
                    _outLength = 0;
                    return;
                }

                batch = _out;
                length = _outLength;
                _out = _spare;
                _outLength = 0;
            }

            try
            {
                _stream.Write(batch, 0, length);
            }
            catch (Exception e)
            {
                // Whatever the stream throws (I/O, disposal, a TLS failure) breaks the connection and fails the
                // waiting commands. Nothing may escape: this also runs as a thread-pool work item.
                Fail(e);
            }

            lock (_lock)
            {
                _spare = batch.Length > 64 * 1024 ? new byte[4096] : batch;
            }
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        var start = 0;
        var end = 0;
        try
        {
            while (true)
            {
                if (end == buffer.Length)
                {
                    if (start > 0)
                    {
                        buffer.AsSpan(start, end - start).CopyTo(buffer);
                        end -= start;
                        start = 0;
                    }
                    else if (buffer.Length >= MaxReplyBytes)
                    {
                        throw new InvalidDataException("a redis reply exceeds the size this connection accepts");
                    }
                    else
                    {
                        var bigger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                        buffer.AsSpan(0, end).CopyTo(bigger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }
                }

                var read = await _stream.ReadAsync(buffer.AsMemory(end)).ConfigureAwait(false);
                if (read == 0)
                {
                    throw new IOException("redis closed the connection");
                }

                end += read;
                while (start < end)
                {
                    var used = RespParser.TryParse(buffer.AsSpan(start, end - start), out var reply);
                    if (used == 0)
                    {
                        break;
                    }

                    start += used;
                    Waiter? complete = null;
                    lock (_lock)
                    {
                        if (!_waiting.TryPeek(out var waiter))
                        {
                            throw new InvalidDataException("redis sent a reply no command waits for");
                        }

                        waiter.Replies[waiter.Received++] = reply;
                        if (waiter.Received == waiter.Replies.Length)
                        {
                            complete = _waiting.Dequeue();
                        }
                    }

                    complete?.TrySetResult(complete.Replies);
                }

                if (start == end)
                {
                    start = end = 0;
                }
            }
        }
        catch (Exception e)
        {
            Fail(e);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void Fail(Exception reason)
    {
        lock (_lock)
        {
            FailLocked(reason);
        }
    }

    private void FailLocked(Exception reason)
    {
        if (_broken is not null)
        {
            return;
        }

        _broken = reason;
        var error = reason as IOException ?? new IOException("the redis connection broke: " + reason.Message, reason);
        while (_waiting.TryDequeue(out var waiter))
        {
            // Continuations run asynchronously (the waiter's option), so nothing runs under this lock.
            waiter.TrySetException(error);
        }

        _outLength = 0;
        _sweep.Dispose();
        _stream.Dispose();
        _socket.Dispose();
    }

    private sealed class Waiter(int count, long sentAt) : TaskCompletionSource<RespReply[]>(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public RespReply[] Replies { get; } = new RespReply[count];

        public int Received { get; set; }

        public long SentAt { get; } = sentAt;
    }
}

/// <summary>A strict RESP2 reply parser: one whole reply or nothing yet; malformed input throws.</summary>
internal static class RespParser
{
    private const int MaxLine = 4096;
    private const int MaxBulk = 64 * 1024;
    private const int MaxElements = 1024;
    private const int MaxDepth = 4;

    /// <summary>
    /// Parses one reply at the start of <paramref name="input"/>; returns the bytes it used, or 0 when the reply is not
    /// complete yet. Throws <see cref="InvalidDataException"/> for anything that is not a well-formed reply within
    /// the limits. Array elements are checked and skipped (no command on this path expects an array).
    /// </summary>
    public static int TryParse(ReadOnlySpan<byte> input, out RespReply reply) => Parse(input, 0, out reply);

    private static int Parse(ReadOnlySpan<byte> input, int depth, out RespReply reply)
    {
        reply = default;
        if (input.IsEmpty)
        {
            return 0;
        }

        var line = input.IndexOf("\r\n"u8);
        if (line < 0)
        {
            return input.Length > MaxLine ? throw new InvalidDataException("redis sent a line without an end") : 0;
        }

        if (line == 0 || line > MaxLine)
        {
            throw new InvalidDataException("redis sent an empty or overlong line");
        }

        var body = input[1..line];
        if (body.IndexOfAny((byte)'\r', (byte)'\n') >= 0)
        {
            throw new InvalidDataException("redis sent a line with a stray line break");
        }

        var used = line + 2;
        switch (input[0])
        {
            case (byte)'+':
                reply = body.SequenceEqual("OK"u8) ? RespReply.Ok : new RespReply(RespKind.Simple, 0, Text(body));
                return used;
            case (byte)'-':
                reply = new RespReply(RespKind.Error, 0, Text(body));
                return used;
            case (byte)':':
                reply = new RespReply(RespKind.Integer, Number(body), null);
                return used;
            case (byte)'$':
            {
                var length = Number(body);
                if (length == -1)
                {
                    reply = RespReply.Nil;
                    return used;
                }

                if (length is < 0 or > MaxBulk)
                {
                    throw new InvalidDataException("redis sent a bulk string of an unexpected length");
                }

                if (input.Length < used + length + 2)
                {
                    return 0;
                }

                if (!input.Slice(used + (int)length, 2).SequenceEqual("\r\n"u8))
                {
                    throw new InvalidDataException("redis sent a bulk string without its end");
                }

                reply = new RespReply(RespKind.Bulk, 0, Text(input.Slice(used, (int)length)));
                return used + (int)length + 2;
            }

            case (byte)'*':
            {
                var count = Number(body);
                if (count == -1)
                {
                    reply = RespReply.Nil;
                    return used;
                }

                if (count is < 0 or > MaxElements || depth >= MaxDepth)
                {
                    throw new InvalidDataException("redis sent an array of an unexpected shape");
                }

                for (var i = 0; i < count; i++)
                {
                    var element = Parse(input[used..], depth + 1, out _);
                    if (element == 0)
                    {
                        return 0;
                    }

                    used += element;
                }

                reply = new RespReply(RespKind.Array, count, null);
                return used;
            }

            default:
                throw new InvalidDataException("redis sent a reply of an unknown type");
        }
    }

    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    private static string Text(ReadOnlySpan<byte> utf8)
    {
        try
        {
            return StrictUtf8.GetString(utf8);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException("redis sent text that is not UTF-8", e);
        }
    }

    private static long Number(ReadOnlySpan<byte> digits) =>
        digits.Length is > 0 and <= 20 && Utf8Parser.TryParse(digits, out long value, out var used) && used == digits.Length
            ? value
            : throw new InvalidDataException("redis sent a malformed number");
}
