using System.Globalization;
using System.Net;
using System.Runtime.ExceptionServices;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.CircuitBreaker;
using Polly.Timeout;
using StackExchange.Redis;

namespace TokenBroker.State.Redis;

/// <summary>
/// State shared by every broker replica, in Redis (single server, Sentinel-managed group or Cluster). With
/// Sentinels, <see cref="SentinelMaster"/> finds the master and follows failovers; the store sends every operation
/// to the master it hands out, and fails closed while there is none.
/// <para>
/// Keys (prefix <c>tb:</c> by default) are designed for Redis Cluster: each operation touches one key, or two keys
/// that share a hash tag and therefore a slot.
/// </para>
/// <list type="bullet">
/// <item><c>tb:{tag}:r:&lt;replay hash&gt;</c>: string, the issued jti; expires with the job token plus leeway.</item>
/// <item><c>tb:{tag}:t:&lt;jti&gt;</c>: string, the issued-token record as JSON; expires with the token. (Earlier
/// builds wrote a hash; such records are still read and revoked, so a rolling upgrade loses no revocation.)</item>
/// <item><c>tb:{tag}:v:&lt;jti&gt;</c>: string, when the token was revoked (Unix milliseconds); expires with the record.</item>
/// <item><c>tb:blocks</c>: hash, field <c>#v</c> the version and <c>b:&lt;id&gt;</c> one JSON block each; no expiry.</item>
/// <item>channel <c>tb:blocks</c>: the new version after every block change.</item>
/// <item><c>tb:keyrotations</c>: hash, field <c>#v</c> the version and <c>k:&lt;kid&gt;</c> one JSON key rotation each; no expiry
/// (bounded by the configured keys: each standby key can be promoted once).</item>
/// <item>channel <c>tb:keyrotations</c>: the new version after every rotation.</item>
/// </list>
/// The tag is the first four hex characters of the replay hash, and the issued jti starts with it
/// (<see cref="StateKeys.ShardTag"/>), so the replay mark and the record live in one slot and are written in one round
/// trip.
/// Every call runs through a timeout (<see cref="RedisStateOptions.OperationTimeout"/>) and a circuit breaker;
/// any failure surfaces as <see cref="StateUnavailableException"/>.
/// </summary>
public sealed partial class RedisStateStore : IStateStore, IDisposable
{
    // Only the mark, when it still names this jti (the consume write's undo when its record was refused).
    private const string ReleaseMarkScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
        return 1
        """;

    private const string ReleaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
        redis.call('DEL', KEYS[2])
        return 1
        """;

    // The first revocation time wins. The mark lives exactly as long as the record. KEYS: record, revocation mark.
    private const string RevokeScript = """
        local kind = redis.call('TYPE', KEYS[1]).ok
        if kind == 'hash' then
            redis.call('HSETNX', KEYS[1], 'rv', ARGV[1])
            return 1
        end
        if kind ~= 'string' then return 0 end
        local ttl = redis.call('PTTL', KEYS[1])
        if ttl > 0 then
            redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ttl)
        else
            redis.call('SET', KEYS[2], ARGV[1], 'NX')
        end
        return 1
        """;

    // One round trip for either record format: {'s', json, revoked-at or nil}, or {'h', field, value, ...} for a
    // hash written by an earlier version, or {} when there is no record. KEYS: record, revocation mark.
    private const string GetScript = """
        local kind = redis.call('TYPE', KEYS[1]).ok
        if kind == 'string' then return {'s', redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])} end
        if kind == 'hash' then
            local fields = redis.call('HGETALL', KEYS[1])
            table.insert(fields, 1, 'h')
            return fields
        end
        return {}
        """;

    private const string AddBlockScript = """
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        local v = redis.call('HINCRBY', KEYS[1], '#v', 1)
        redis.call('PUBLISH', ARGV[3], v)
        return v
        """;

    private const string RemoveBlockScript = """
        if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
        local v = redis.call('HINCRBY', KEYS[1], '#v', 1)
        redis.call('PUBLISH', ARGV[2], v)
        return v
        """;

    // Compare-and-set on the version, and at most one rotation per key: two admins rotating at once cannot both win.
    private const string AddRotationScript = """
        local v = tonumber(redis.call('HGET', KEYS[1], '#v') or '0')
        if v ~= tonumber(ARGV[1]) then return -1 end
        if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then return -1 end
        v = redis.call('HINCRBY', KEYS[1], '#v', 1)
        redis.call('PUBLISH', ARGV[4], v)
        return v
        """;

    // After a failover the new master may have lost the last block changes (replication is asynchronous), so its
    // version can be lower than one this replica already cached, and a versioned cache would ignore it. Raise the
    // version above the highest one seen (and notify every replica) so that every cache takes the new master's list.
    private const string RaiseVersionScript = """
        local v = tonumber(redis.call('HGET', KEYS[1], '#v') or '0')
        if v >= tonumber(ARGV[1]) then return v end
        v = redis.call('HINCRBY', KEYS[1], '#v', tonumber(ARGV[1]) - v + 1)
        redis.call('PUBLISH', ARGV[2], v)
        return v
        """;

    /// <summary>The port of a Sentinel when <see cref="RedisStateOptions.Sentinels"/> names none.</summary>
    public const int DefaultSentinelPort = 26379;

    private const string VersionField = "#v";
    private const string RotationFieldPrefix = "k:";
    private const string BlockFieldPrefix = "b:";

    // Fixed endpoints (single server, Cluster): one connection for the store's lifetime. Sentinels: _sentinel
    // hands out the connection to the checked master, and _redis is null.
    private readonly ConnectionMultiplexer? _redis;
    private SentinelMaster? _sentinel;
    private long _highestBlockVersion;
    private readonly RedisStateOptions _options;
    private readonly RedisTls? _tls;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    // _breaker is the circuit breaker alone; _pipeline is the breaker plus Polly's per-call timeout. Operations
    // through SE.Redis use _pipeline; the exchange's write over the direct connection uses _breaker, because the
    // connection enforces the same budget itself with one timer for all its commands. Both share one breaker state.
    private readonly ResiliencePipeline _breaker;
    private readonly ResiliencePipeline _pipeline;
    private readonly RedisKey _blocksKey;
    private readonly RedisChannel _blocksChannel;
    private readonly RedisKey _rotationsKey;
    private readonly RedisChannel _rotationsChannel;

    // The exchange's write goes over its own pipelined connection (RespPipe) whenever the store talks to one node: a
    // single server, or the master the Sentinels name. On a Cluster it goes through SE.Redis, which routes by slot.
    // _direct: 0 not decided yet (the server did not answer so far), 1 one standalone node, 2 anything else.
    private readonly object _pipeLock = new();
    private int _direct;
    private EndPoint? _directNode;
    private RespPipe? _pipe;
    private Task<RespPipe>? _pipeConnecting;
    private EndPoint? _pipeConnectingTo;
    private long _pipeRetryAt;
    private bool _disposed;

    private RedisStateStore(ConnectionMultiplexer? redis, RedisStateOptions options, RedisTls? tls, TimeProvider time, ILogger logger)
    {
        _redis = redis;
        _options = options;
        _tls = tls;
        _time = time;
        _logger = logger;
        _blocksKey = options.KeyPrefix + "blocks";
        _blocksChannel = new RedisChannel(options.KeyPrefix + "blocks", RedisChannel.PatternMode.Literal);
        _rotationsKey = options.KeyPrefix + "keyrotations";
        _rotationsChannel = new RedisChannel(options.KeyPrefix + "keyrotations", RedisChannel.PatternMode.Literal);
        _breaker = BuildBreaker(options, time, logger);
        _pipeline = new ResiliencePipelineBuilder { TimeProvider = time }.AddPipeline(_breaker).AddTimeout(options.OperationTimeout).Build();
        if (redis is not null)
        {
            Watch(redis);
        }
    }

    private void Watch(ConnectionMultiplexer redis)
    {
        // SE.Redis 1.x completes every async result in arrival order on a single worker by default, so the rest of
        // each exchange (signing, the response) ran serialised behind the others' on one thread. Nothing here depends
        // on that order: block and key-rotation notifications only trigger a re-read.
        redis.PreserveAsyncOrder = false;
        redis.ConnectionFailed += (_, e) =>
        {
            Log.ConnectionFailed(_logger, e.EndPoint?.ToString() ?? "?", e.FailureType.ToString());
            _sentinel?.RequestCheck();
        };
        redis.ConnectionRestored += (_, e) =>
        {
            Log.ConnectionRestored(_logger, e.EndPoint?.ToString() ?? "?");

            // Notifications may have been lost while the connection was down: make listeners re-read.
            BlocksChanged?.Invoke();
            KeyRotationsChanged?.Invoke();
            _sentinel?.RequestCheck();
        };
    }

    public event Action? BlocksChanged;

    public event Action? KeyRotationsChanged;

    /// <summary>
    /// Connects (without failing when Redis is down: the store then fails closed until Redis answers, and reconnects
    /// by itself) and subscribes to block notifications.
    /// </summary>
    public static async Task<RedisStateStore> ConnectAsync(RedisStateOptions options, TimeProvider time, ILogger logger)
    {
        // One TLS policy (trust, client certificate) for every connection that uses TLS; the files are read once, here.
        var tls = options.Ssl || options.SentinelSsl == true ? RedisTls.Create(options, logger) : null;
        if (options.Sentinels.Count > 0)
        {
            var store = new RedisStateStore(null, options, tls, time, logger);
            store._sentinel = await SentinelMaster.StartAsync(
                options,
                tls,
                async endpoint =>
                {
                    var connection = await ConnectionMultiplexer.ConnectAsync(DataConfiguration(options, tls, [endpoint])).ConfigureAwait(false);
                    store.Watch(connection);
                    return connection;
                },
                connection => store.SubscribeAsync(connection),
                store.OnMasterSwitched,
                time,
                logger).ConfigureAwait(false);
            await store.OpenPipeAsync().ConfigureAwait(false);
            return store;
        }

        var redis = await ConnectionMultiplexer.ConnectAsync(DataConfiguration(options, tls, options.Endpoints.Select(e => ParseEndPoint(e)))).ConfigureAwait(false);
        var fixedStore = new RedisStateStore(redis, options, tls, time, logger);
        await fixedStore.SubscribeAsync(redis).ConfigureAwait(false);
        await fixedStore.OpenPipeAsync().ConfigureAwait(false);
        return fixedStore;
    }

    private static ConfigurationOptions DataConfiguration(RedisStateOptions options, RedisTls? tls, IEnumerable<EndPoint> endpoints)
    {
        var config = new ConfigurationOptions
        {
            AbortOnConnectFail = false,
            ConnectTimeout = (int)options.ConnectTimeout.TotalMilliseconds,
            SyncTimeout = Math.Max(1000, (int)options.OperationTimeout.TotalMilliseconds),
            ConnectRetry = 1,
            KeepAlive = 5,
            ReconnectRetryPolicy = new LinearRetry(500),
            ClientName = "tokenbroker",
            Password = options.Password,
            Ssl = options.Ssl,
        };
        if (options.Ssl)
        {
            tls!.Apply(config);
        }

        foreach (var endpoint in endpoints)
        {
            config.EndPoints.Add(endpoint);
        }

        return config;
    }

    /// <summary>
    /// Loads the TLS files the options name (<see cref="RedisStateOptions.CaCertificateFile"/>, the client certificate
    /// and key) as the store would, and returns what is wrong with them as configuration errors, each starting with
    /// <paramref name="prefix"/>; empty when they are usable.
    /// </summary>
    public static IReadOnlyList<string> TlsFileErrors(RedisStateOptions options, string prefix) => RedisTls.FileErrors(options, prefix);

    /// <summary>Parses <c>host:port</c> (an IP literal or a name); the port defaults to <paramref name="defaultPort"/>.</summary>
    public static EndPoint ParseEndPoint(string value, int defaultPort = 6379)
    {
        if (IPEndPoint.TryParse(value, out var ip) && (value.Contains(':', StringComparison.Ordinal) || ip.Port != 0))
        {
            return ip.Port == 0 ? new IPEndPoint(ip.Address, defaultPort) : ip;
        }

        var colon = value.LastIndexOf(':');
        if (colon > 0 && int.TryParse(value.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and < 65536)
        {
            return new DnsEndPoint(value[..colon], port);
        }

        if (colon < 0 && value.Length > 0)
        {
            return new DnsEndPoint(value, defaultPort);
        }

        throw new FormatException($"'{value}' is not host:port");
    }

    private async Task SubscribeAsync(ConnectionMultiplexer redis)
    {
        try
        {
            await redis.GetSubscriber().SubscribeAsync(_blocksChannel, (_, message) =>
            {
                if (message.TryParse(out long version))
                {
                    SawBlockVersion(version);
                }

                BlocksChanged?.Invoke();
            }).ConfigureAwait(false);
            await redis.GetSubscriber().SubscribeAsync(_rotationsChannel, (_, _) => KeyRotationsChanged?.Invoke()).ConfigureAwait(false);
        }
        catch (RedisException e)
        {
            // Redis is down at start-up: the client subscribes again when it connects, and the periodic re-sync covers the gap.
            Log.SubscribeFailed(_logger, e.Message);
        }
    }

    /// <summary>The store moved to a (new or re-checked) master: align the block version, then make listeners re-read.</summary>
    private void OnMasterSwitched()
    {
        _ = RaiseBlockVersionAsync();
        _ = OpenPipeAsync();
    }

    private async Task RaiseBlockVersionAsync()
    {
        try
        {
            var seen = Interlocked.Read(ref _highestBlockVersion);
            if (seen > 0)
            {
                RedisKey[] keys = [_blocksKey];
                RedisValue[] args = [seen, (string)_blocksChannel!];
                SawBlockVersion(await RunAsync("block.version", async db => (long)await db.ScriptEvaluateAsync(RaiseVersionScript, keys, args).ConfigureAwait(false), CancellationToken.None).ConfigureAwait(false));
            }
        }
        catch (StateUnavailableException e)
        {
            Log.RaiseVersionFailed(_logger, e.Message);
        }

        BlocksChanged?.Invoke();
        KeyRotationsChanged?.Invoke();
    }

    private void SawBlockVersion(long version)
    {
        var seen = Interlocked.Read(ref _highestBlockVersion);
        while (version > seen)
        {
            var was = Interlocked.CompareExchange(ref _highestBlockVersion, version, seen);
            if (was == seen)
            {
                return;
            }

            seen = was;
        }
    }

    internal string ReplayKey(string replayKey) => $"{_options.KeyPrefix}{{{StateKeys.ShardTag(replayKey)}}}:r:{replayKey}";

    internal string RecordKey(string jti) => $"{_options.KeyPrefix}{{{jti[..StateKeys.ShardTagLength]}}}:t:{jti}";

    internal string RevokedKey(string jti) => $"{_options.KeyPrefix}{{{jti[..StateKeys.ShardTagLength]}}}:v:{jti}";

    public ValueTask<bool> TryConsumeAsync(string replayKey, DateTimeOffset replayExpiresAt, IssuedTokenRecord issued, CancellationToken cancel)
    {
        if (!issued.Jti.StartsWith(StateKeys.ShardTag(replayKey), StringComparison.Ordinal))
        {
            throw new ArgumentException("the issued jti must start with the replay key's shard tag", nameof(issued));
        }

        var now = _time.GetUtcNow();
        var write = new ConsumeWrite(
            ReplayKey(replayKey),
            RecordKey(issued.Jti),
            issued.Jti,
            StoredRecord.Serialize(issued),
            TimeSpan.FromMilliseconds(Math.Max(1, (long)(replayExpiresAt - now).TotalMilliseconds)),
            TimeSpan.FromMilliseconds(Math.Max(1, (long)(issued.ExpiresAt - now).TotalMilliseconds)));
        if (DirectEndPoint() is { } node)
        {
            // The connection fails a command unanswered within OperationTimeout (TimeoutException), so only the
            // breaker wraps this call; a connection still being opened is awaited for the same budget.
            return GuardAsync(
                _breaker,
                "consume",
                static (s, _) => s.store.CurrentPipe(s.node) is { } pipe ? s.write.RunAsync(pipe) : s.store.ConnectThenWriteAsync(s.node, s.write),
                (store: this, node, write),
                cancel);
        }

        return RunAsync("consume", write.RunAsync, cancel);
    }

    private async Task<bool> ConnectThenWriteAsync(EndPoint node, ConsumeWrite write)
    {
        var pipe = await ConnectPipe(node).WaitAsync(_options.OperationTimeout).ConfigureAwait(false);
        return await write.RunAsync(pipe).ConfigureAwait(false);
    }

    /// <summary>The node the exchange's write goes to directly, or null when it goes through SE.Redis.</summary>
    private EndPoint? DirectEndPoint()
    {
        if (_redis is null)
        {
            return _sentinel?.CurrentMasterEndPoint; // null while the Sentinels name no checked master yet
        }

        switch (Volatile.Read(ref _direct))
        {
            case 1:
                return _directNode;
            case 2:
                return null;
        }

        // Decided once the server has answered: a Cluster node or several endpoints stay with SE.Redis.
        var endPoints = _redis!.GetEndPoints();
        if (endPoints.Length != 1 || _options.Endpoints.Count != 1)
        {
            Volatile.Write(ref _direct, 2);
            return null;
        }

        var server = _redis.GetServer(endPoints[0]);
        if (!server.IsConnected)
        {
            return null;
        }

        if (server.ServerType != ServerType.Standalone)
        {
            Volatile.Write(ref _direct, 2);
            return null;
        }

        _directNode = endPoints[0];
        Volatile.Write(ref _direct, 1);
        return _directNode;
    }

    // Best effort at start-up and after a failover, so that the first exchange does not pay for the connection.
    private async Task OpenPipeAsync()
    {
        if (DirectEndPoint() is { } node)
        {
            try
            {
                _ = CurrentPipe(node) ?? await ConnectPipe(node).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or TimeoutException or RedisReplyException or ObjectDisposedException or System.Security.Authentication.AuthenticationException)
            {
                Log.PipeConnectFailed(_logger, node.ToString() ?? "?", e.Message);
            }
        }
    }

    private RespPipe? CurrentPipe(EndPoint node) => Volatile.Read(ref _pipe) is { Broken: null } pipe && pipe.EndPoint.Equals(node) ? pipe : null;

    // One connection attempt at a time; after a failed one, none for 500 ms (callers fail closed meanwhile), as
    // SE.Redis retries. A pipe to a former master is closed when the Sentinels name another.
    private Task<RespPipe> ConnectPipe(EndPoint node)
    {
        lock (_pipeLock)
        {
            if (_pipe is { Broken: null } current && current.EndPoint.Equals(node))
            {
                return Task.FromResult(current);
            }

            if (_pipeConnecting is { IsCompleted: false } pending && node.Equals(_pipeConnectingTo))
            {
                return pending;
            }

            if (_disposed)
            {
                return Task.FromException<RespPipe>(new ObjectDisposedException(nameof(RedisStateStore)));
            }

            if (_time.GetTimestamp() < _pipeRetryAt)
            {
                return Task.FromException<RespPipe>(new IOException($"the last connection attempt to {node} failed; the next one is due shortly"));
            }

            _pipe?.Dispose();
            _pipe = null;
            _pipeConnectingTo = node;
            return _pipeConnecting = Connect(node);
        }

        async Task<RespPipe> Connect(EndPoint node)
        {
            await Task.Yield(); // the caller holds _pipeLock
            try
            {
                var pipe = await RespPipe.ConnectAsync(node, _options.Password, _options.Ssl ? _tls : null, "tokenbroker:exchange", _options.ConnectTimeout, StaleAfter(_options), _options.OperationTimeout).ConfigureAwait(false);
                lock (_pipeLock)
                {
                    if (_disposed)
                    {
                        pipe.Dispose();
                        throw new ObjectDisposedException(nameof(RedisStateStore));
                    }

                    _pipe = pipe;
                }

                return pipe;
            }
            catch
            {
                lock (_pipeLock)
                {
                    _pipeRetryAt = _time.GetTimestamp() + (long)(0.5 * _time.TimestampFrequency);
                }

                throw;
            }
        }
    }

    /// <summary>How long a command may stay unanswered before the connection is presumed dead and replaced.</summary>
    internal static TimeSpan StaleAfter(RedisStateOptions options) => TimeSpan.FromTicks(Math.Max(4 * options.OperationTimeout.Ticks, TimeSpan.FromSeconds(2).Ticks));

    /// <summary>
    /// One exchange's write, in one round trip without a script (a script costs Redis about twice the CPU): the
    /// record first, then the replay mark with NX, pipelined on one connection so Redis runs them in that order.
    /// Exactly one caller per job token gets the mark. A caller that does not removes the record it wrote, which
    /// names a jti that is never signed; should that removal be lost, the record only expires unseen. A mark that
    /// landed without its record is released, so that a failed write never burns the job token.
    /// </summary>
    private sealed class ConsumeWrite(string replayKey, string recordKey, string jti, byte[] record, TimeSpan replayTtl, TimeSpan recordTtl)
    {
        private enum Undo
        {
            None,
            DeleteRecord,
            ReleaseMark,
        }

        /// <summary>Over the direct connection: both commands in one write, both replies in one completion.</summary>
        public async Task<bool> RunAsync(RespPipe pipe)
        {
            RespArg[] recordCommand = ["SET", recordKey, record, "PX", Milliseconds(recordTtl)];
            RespArg[] markCommand = ["SET", replayKey, jti, "NX", "PX", Milliseconds(replayTtl)];
            var replies = await pipe.SendAsync([recordCommand, markCommand]).ConfigureAwait(false);
            var (recorded, marked) = (replies[0], replies[1]);
            var (issued, undo) = Settle(recorded.IsOk, marked.IsOk ? true : marked.Kind == RespKind.Nil ? false : null);
            switch (undo)
            {
                case Undo.DeleteRecord:
                    Forget(pipe.SendAsync([["DEL", recordKey]]));
                    break;
                case Undo.ReleaseMark:
                    Forget(pipe.SendAsync([["EVAL", ReleaseMarkScript, "1", replayKey, jti]]));
                    break;
            }

            return issued ?? throw new RedisReplyException(
                recorded.Kind == RespKind.Error ? recorded.Text! :
                marked.Kind == RespKind.Error ? marked.Text! :
                $"unexpected replies to the exchange's write ({recorded.Kind}, {marked.Kind})");
        }

        /// <summary>Through SE.Redis (Cluster), which pipelines the two commands on the slot's connection.</summary>
        public async Task<bool> RunAsync(IDatabase db)
        {
            var recorded = db.StringSetAsync(recordKey, record, recordTtl);
            var marked = db.StringSetAsync(replayKey, jti, replayTtl, When.NotExists);
            ExceptionDispatchInfo? failure = null;
            try
            {
                await Task.WhenAll(recorded, marked).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }

            var (issued, undo) = Settle(recorded.IsCompletedSuccessfully && recorded.Result, marked.IsCompletedSuccessfully ? marked.Result : null);
            switch (undo)
            {
                case Undo.DeleteRecord:
                    _ = db.KeyDeleteAsync(recordKey, CommandFlags.FireAndForget);
                    break;
                case Undo.ReleaseMark:
                    _ = db.ScriptEvaluateAsync(ReleaseMarkScript, [replayKey], [jti], CommandFlags.FireAndForget);
                    break;
            }

            if (issued is { } result)
            {
                return result;
            }

            failure?.Throw();
            throw new RedisReplyException("the record of the exchange's write was not stored");
        }

        /// <summary>
        /// What the two replies mean, whichever connection carried them: issued (true), a replay (false) or a failure
        /// (null), and the half to undo. <paramref name="marked"/>: the mark was set (true), existed already (false),
        /// or its command failed (null).
        /// </summary>
        private static (bool? Issued, Undo Undo) Settle(bool recorded, bool? marked) => (recorded, marked) switch
        {
            (true, true) => (true, Undo.None),
            (true, false) => (false, Undo.DeleteRecord), // a replay: the record names a jti that is never signed
            (true, null) => (null, Undo.DeleteRecord),
            (false, true) => (null, Undo.ReleaseMark), // never burn the job token on a write that failed
            _ => (null, Undo.None),
        };

        private static string Milliseconds(TimeSpan ttl) => ((long)ttl.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);

        // The undo of a refused or lost write: its outcome changes nothing for the caller, but is observed.
        private static void Forget(Task task) => task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public async ValueTask ReleaseAsync(string replayKey, string issuedJti, CancellationToken cancel)
    {
        RedisKey[] keys = [ReplayKey(replayKey), RecordKey(issuedJti)];
        await RunAsync("release", async db => await db.ScriptEvaluateAsync(ReleaseScript, keys, [issuedJti]).ConfigureAwait(false), cancel).ConfigureAwait(false);
    }

    public async ValueTask RecordIssuedAsync(IssuedTokenRecord issued, CancellationToken cancel)
    {
        if (!StateKeys.HasShardTag(issued.Jti))
        {
            throw new ArgumentException("the issued jti must carry a shard tag", nameof(issued));
        }

        var recordTtl = TimeSpan.FromMilliseconds(Math.Max(1, (long)(issued.ExpiresAt - _time.GetUtcNow()).TotalMilliseconds));
        var key = RecordKey(issued.Jti);
        var record = StoredRecord.Serialize(issued);
        await RunAsync("record", db => db.StringSetAsync(key, record, recordTtl), cancel).ConfigureAwait(false);
    }

    public async ValueTask<IssuedTokenRecord?> GetIssuedAsync(string jti, CancellationToken cancel)
    {
        if (!StateKeys.HasShardTag(jti))
        {
            return null; // not an id this broker issues: no Redis call for junk
        }

        RedisKey[] keys = [RecordKey(jti), RevokedKey(jti)];
        var reply = await RunAsync("get", async db => (RedisResult[])(await db.ScriptEvaluateAsync(GetScript, keys).ConfigureAwait(false))!, cancel).ConfigureAwait(false);
        var record = reply.Length switch
        {
            0 => null,
            3 when (string?)reply[0] == "s" => StoredRecord.Read(jti, (byte[]?)reply[1], (string?)reply[2]),
            _ when (string?)reply[0] == "h" => ReadHashRecord(jti, reply.AsSpan(1)),
            _ => null,
        };
        return record is not null && record.ExpiresAt > _time.GetUtcNow() ? record : null;
    }

    public async ValueTask<bool> RevokeAsync(string jti, DateTimeOffset revokedAt, CancellationToken cancel)
    {
        if (!StateKeys.HasShardTag(jti))
        {
            return false;
        }

        RedisKey[] keys = [RecordKey(jti), RevokedKey(jti)];
        return await RunAsync("revoke", async db => (long)await db.ScriptEvaluateAsync(RevokeScript, keys, [revokedAt.ToUnixTimeMilliseconds()]).ConfigureAwait(false) == 1, cancel).ConfigureAwait(false);
    }

    public async ValueTask<BlockSet> GetBlocksAsync(CancellationToken cancel)
    {
        var entries = await RunAsync("blocks", db => db.HashGetAllAsync(_blocksKey), cancel).ConfigureAwait(false);
        long version = 0;
        var blocks = new List<Block>();
        foreach (var entry in entries)
        {
            var name = (string)entry.Name!;
            if (name == VersionField)
            {
                version = (long)entry.Value;
            }
            else if (name.StartsWith(BlockFieldPrefix, StringComparison.Ordinal))
            {
                var block = JsonSerializer.Deserialize((string)entry.Value!, StateJsonContext.Default.Block);
                if (block is not null)
                {
                    blocks.Add(block);
                }
            }
        }

        blocks.Sort((a, b) => a.CreatedAt != b.CreatedAt ? a.CreatedAt.CompareTo(b.CreatedAt) : string.CompareOrdinal(a.Id, b.Id));
        SawBlockVersion(version);
        return new BlockSet(version, blocks);
    }

    public async ValueTask<long> AddBlockAsync(Block block, CancellationToken cancel)
    {
        RedisKey[] keys = [_blocksKey];
        RedisValue[] args = [BlockFieldPrefix + block.Id, JsonSerializer.Serialize(block, StateJsonContext.Default.Block), (string)_blocksChannel!];
        var version = await RunAsync("block.add", async db => (long)await db.ScriptEvaluateAsync(AddBlockScript, keys, args).ConfigureAwait(false), cancel).ConfigureAwait(false);
        SawBlockVersion(version);
        return version;
    }

    public async ValueTask<bool> RemoveBlockAsync(string id, CancellationToken cancel)
    {
        RedisKey[] keys = [_blocksKey];
        RedisValue[] args = [BlockFieldPrefix + id, (string)_blocksChannel!];
        var version = await RunAsync("block.remove", async db => (long)await db.ScriptEvaluateAsync(RemoveBlockScript, keys, args).ConfigureAwait(false), cancel).ConfigureAwait(false);
        SawBlockVersion(version);
        return version > 0;
    }

    public async ValueTask<KeyRotationSet> GetKeyRotationsAsync(CancellationToken cancel)
    {
        var entries = await RunAsync("keyrotations", db => db.HashGetAllAsync(_rotationsKey), cancel).ConfigureAwait(false);
        long version = 0;
        var rotations = new List<KeyRotation>();
        foreach (var entry in entries)
        {
            var name = (string)entry.Name!;
            if (name == VersionField)
            {
                version = (long)entry.Value;
            }
            else if (name.StartsWith(RotationFieldPrefix, StringComparison.Ordinal))
            {
                var rotation = JsonSerializer.Deserialize((string)entry.Value!, StateJsonContext.Default.KeyRotation);
                if (rotation is not null)
                {
                    rotations.Add(rotation);
                }
            }
        }

        rotations.Sort((a, b) => a.RequestedAt != b.RequestedAt ? a.RequestedAt.CompareTo(b.RequestedAt) : string.CompareOrdinal(a.KeyId, b.KeyId));
        return new KeyRotationSet(version, rotations);
    }

    public async ValueTask<long?> TryAddKeyRotationAsync(long expectedVersion, KeyRotation rotation, CancellationToken cancel)
    {
        RedisKey[] keys = [_rotationsKey];
        RedisValue[] args = [expectedVersion, RotationFieldPrefix + rotation.KeyId, JsonSerializer.Serialize(rotation, StateJsonContext.Default.KeyRotation), (string)_rotationsChannel!];
        var version = await RunAsync("keyrotation.add", async db => (long)await db.ScriptEvaluateAsync(AddRotationScript, keys, args).ConfigureAwait(false), cancel).ConfigureAwait(false);
        return version < 0 ? null : version;
    }

    public async ValueTask<bool> PingAsync(CancellationToken cancel)
    {
        await RunAsync("ping", db => db.PingAsync(), cancel).ConfigureAwait(false);
        return true;
    }

    public void Dispose()
    {
        lock (_pipeLock)
        {
            _disposed = true;
            _pipe?.Dispose();
        }

        _redis?.Dispose();
        _sentinel?.Dispose();
        _tls?.Dispose();
    }

    /// <summary>The exchange's direct connection as it is now (tests check where the write went), or null.</summary>
    internal RespPipe? DirectConnection => Volatile.Read(ref _pipe);

    /// <summary>The data connection operations go to; with Sentinels, only a checked master.</summary>
    private ConnectionMultiplexer Connection()
    {
        if (_redis is not null)
        {
            return _redis;
        }

        if (_sentinel?.Current is { } master)
        {
            return master;
        }

        _sentinel?.RequestCheck();
        throw new StateUnavailableException($"redis: no checked master for '{_options.ServiceName}' (last known {_sentinel?.CurrentEndPoint ?? "none"}); failover in progress or Sentinels unreachable");
    }

    /// <summary>Runs one SE.Redis operation through <see cref="GuardAsync"/>.</summary>
    private ValueTask<T> RunAsync<T>(string operation, Func<IDatabase, Task<T>> call, CancellationToken cancel) =>
        // SE.Redis 1.2.6 takes no cancellation token: WaitAsync lets the timeout abandon the wait.
        GuardAsync(_pipeline, operation, static (state, token) => state.call(state.db).WaitAsync(token), (call, db: Connection().GetDatabase()), cancel);

    /// <summary>Runs one operation through <paramref name="guard"/> (the circuit breaker, with or without the timeout); every failure becomes <see cref="StateUnavailableException"/>.</summary>
    private async ValueTask<T> GuardAsync<TState, T>(ResiliencePipeline guard, string operation, Func<TState, CancellationToken, Task<T>> call, TState state, CancellationToken cancel)
    {
        try
        {
            return await guard.ExecuteAsync(static (s, token) => new ValueTask<T>(s.call(s.state, token)), (call, state), cancel).ConfigureAwait(false);
        }
        catch (TimeoutRejectedException e)
        {
            throw new StateUnavailableException($"redis {operation}: no answer within {_options.OperationTimeout.TotalMilliseconds} ms", e);
        }
        catch (BrokenCircuitException e)
        {
            throw new StateUnavailableException($"redis {operation}: circuit open after recent failures", e);
        }
        catch (Exception e) when (IsReadOnly(e))
        {
            // The node was demoted to a replica under us (failover): it refused the write, so nothing was written.
            _sentinel?.ReportNotMaster();
            throw new StateUnavailableException($"redis {operation}: the node is no longer the master (READONLY)", e);
        }
        catch (RedisException e)
        {
            if (e is RedisConnectionException)
            {
                _sentinel?.RequestCheck();
            }

            throw new StateUnavailableException($"redis {operation}: {e.GetType().Name}: {e.Message}", e);
        }
        catch (RedisReplyException e)
        {
            throw new StateUnavailableException($"redis {operation}: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or SocketException or System.Security.Authentication.AuthenticationException)
        {
            // The direct connection broke or could not be opened; the Sentinels may know why.
            _sentinel?.RequestCheck();
            throw new StateUnavailableException($"redis {operation}: {e.GetType().Name}: {e.Message}", e);
        }
        catch (ObjectDisposedException e) when (_sentinel is not null)
        {
            // The connection was replaced after a failover while this operation waited on it.
            throw new StateUnavailableException($"redis {operation}: the connection to the old master was closed", e);
        }
        catch (TimeoutException e)
        {
            throw new StateUnavailableException($"redis {operation}: {e.Message}", e);
        }
    }

    private static bool IsReadOnly(Exception e) =>
        e is RedisServerException or RedisReplyException && e.Message.StartsWith("READONLY", StringComparison.Ordinal);

    private static ResiliencePipeline BuildBreaker(RedisStateOptions options, TimeProvider time, ILogger logger)
    {
        var handled = new PredicateBuilder()
            .Handle<RedisException>()
            .Handle<RedisReplyException>()
            .Handle<IOException>()
            .Handle<SocketException>()
            .Handle<TimeoutException>()
            .Handle<TimeoutRejectedException>();
        return new ResiliencePipelineBuilder { TimeProvider = time }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                ShouldHandle = handled,
                FailureRatio = 0.5,
                MinimumThroughput = 4,
                SamplingDuration = TimeSpan.FromSeconds(5),
                BreakDuration = options.BreakDuration,
                OnOpened = _ =>
                {
                    Log.CircuitOpened(logger, options.BreakDuration.TotalMilliseconds);
                    return ValueTask.CompletedTask;
                },
                OnClosed = _ =>
                {
                    Log.CircuitClosed(logger);
                    return ValueTask.CompletedTask;
                },
            })
            .Build();
    }

    // A record in the hash format of earlier builds (field, value, field, value...), readable until it expires.
    private static IssuedTokenRecord? ReadHashRecord(string jti, ReadOnlySpan<RedisResult> pairs)
    {
        var map = new Dictionary<string, RedisValue>(StringComparer.Ordinal);
        for (var i = 0; i + 1 < pairs.Length; i += 2)
        {
            map[(string)pairs[i]!] = (RedisValue)pairs[i + 1];
        }

        if (!map.TryGetValue("e", out var e) || !map.TryGetValue("i", out var i2))
        {
            return null; // a half-written record cannot exist (scripts are atomic); treat anything else as unknown
        }

        string? Text(string field) => map.TryGetValue(field, out var value) ? (string?)value : null;
        var stored = new StoredRecord
        {
            ExpiresAt = (long)e,
            IssuedAt = (long)i2,
            Subject = Text("s"),
            Rule = Text("u"),
            Provider = Text("p"),
            RepositoryId = Text("ri"),
            OwnerId = Text("oi"),
            RunId = Text("rn"),
        };
        return stored.ToRecord(jti, map.TryGetValue("rv", out var rv) ? (long)rv : null);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "Redis connection to {EndPoint} failed ({FailureType}); state operations fail closed until it returns")]
        public static partial void ConnectionFailed(ILogger logger, string endPoint, string failureType);

        [LoggerMessage(EventId = 3002, Level = LogLevel.Information, Message = "Redis connection to {EndPoint} restored")]
        public static partial void ConnectionRestored(ILogger logger, string endPoint);

        [LoggerMessage(EventId = 3003, Level = LogLevel.Warning, Message = "Redis circuit opened for {BreakMs} ms after repeated failures")]
        public static partial void CircuitOpened(ILogger logger, double breakMs);

        [LoggerMessage(EventId = 3004, Level = LogLevel.Information, Message = "Redis circuit closed: state operations succeed again")]
        public static partial void CircuitClosed(ILogger logger);

        [LoggerMessage(EventId = 3005, Level = LogLevel.Warning, Message = "Subscribing to block and key rotation notifications failed: {Reason}; retried on reconnect")]
        public static partial void SubscribeFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 3007, Level = LogLevel.Warning, Message = "Opening the exchange connection to Redis at {EndPoint} failed: {Reason}; retried on the next exchange")]
        public static partial void PipeConnectFailed(ILogger logger, string endPoint, string reason);

        [LoggerMessage(EventId = 3006, Level = LogLevel.Warning, Message = "Raising the block version on the new master failed: {Reason}; the periodic re-read still runs")]
        public static partial void RaiseVersionFailed(ILogger logger, string reason);
    }
}

[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
[System.Text.Json.Serialization.JsonSerializable(typeof(Block))]
[System.Text.Json.Serialization.JsonSerializable(typeof(KeyRotation))]
[System.Text.Json.Serialization.JsonSerializable(typeof(StoredRecord))]
internal sealed partial class StateJsonContext : System.Text.Json.Serialization.JsonSerializerContext;

/// <summary>The issued-token record as stored in Redis: short JSON names, times in Unix seconds.</summary>
internal sealed class StoredRecord
{
    [System.Text.Json.Serialization.JsonPropertyName("e")]
    public long ExpiresAt { get; set; }

    [System.Text.Json.Serialization.JsonPropertyName("i")]
    public long IssuedAt { get; set; }

    [System.Text.Json.Serialization.JsonPropertyName("s")]
    public string? Subject { get; set; }

    [System.Text.Json.Serialization.JsonPropertyName("u")]
    public string? Rule { get; set; }

    [System.Text.Json.Serialization.JsonPropertyName("p")]
    public string? Provider { get; set; }

    [System.Text.Json.Serialization.JsonPropertyName("ri")]
    public string? RepositoryId { get; set; }

    [System.Text.Json.Serialization.JsonPropertyName("oi")]
    public string? OwnerId { get; set; }

    [System.Text.Json.Serialization.JsonPropertyName("rn")]
    public string? RunId { get; set; }

    public static byte[] Serialize(IssuedTokenRecord r) => JsonSerializer.SerializeToUtf8Bytes(
        new StoredRecord
        {
            ExpiresAt = r.ExpiresAt.ToUnixTimeSeconds(),
            IssuedAt = r.IssuedAt.ToUnixTimeSeconds(),
            Subject = r.Subject,
            Rule = r.Rule,
            Provider = r.Provider,
            RepositoryId = r.RepositoryId,
            OwnerId = r.OwnerId,
            RunId = r.RunId,
        },
        StateJsonContext.Default.StoredRecord);

    /// <summary>The record, or null when the stored value is not one (treated as unknown: fail closed).</summary>
    public static IssuedTokenRecord? Read(string jti, byte[]? json, string? revokedAt)
    {
        StoredRecord? stored;
        try
        {
            stored = json is null ? null : JsonSerializer.Deserialize(json, StateJsonContext.Default.StoredRecord);
        }
        catch (JsonException)
        {
            return null;
        }

        long revokedAtMs = 0;
        if (stored is null || (revokedAt is not null && !long.TryParse(revokedAt, NumberStyles.None, CultureInfo.InvariantCulture, out revokedAtMs)))
        {
            return null;
        }

        return stored.ToRecord(jti, revokedAt is null ? null : revokedAtMs);
    }

    /// <summary>The record, or null when a required member is missing (read as unknown).</summary>
    public IssuedTokenRecord? ToRecord(string jti, long? revokedAtMs) =>
        this is not { Subject: { } subject, Rule: { } rule, Provider: { } provider }
            ? null
            : new IssuedTokenRecord
            {
                Jti = jti,
                ExpiresAt = DateTimeOffset.FromUnixTimeSeconds(ExpiresAt),
                IssuedAt = DateTimeOffset.FromUnixTimeSeconds(IssuedAt),
                Subject = subject,
                Rule = rule,
                Provider = provider,
                RepositoryId = RepositoryId,
                OwnerId = OwnerId,
                RunId = RunId,
                RevokedAt = revokedAtMs is { } ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null,
            };
}
