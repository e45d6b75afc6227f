using System.Net;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace TokenBroker.State.Redis;

/// <summary>
/// Finds and follows the master of a Sentinel-managed group for <see cref="RedisStateStore"/>.
/// <para>
/// StackExchange.Redis 1.2.6 can talk to Sentinels (a Sentinel command map,
/// <see cref="IServer.SentinelGetMasterAddressByNameAsync"/>) but does not turn a service name into a data
/// connection, so this class does: it asks the Sentinels for the master's address, opens a data connection to that
/// one node, checks that the node answers <c>ROLE</c> with <c>master</c> and only then hands the connection out. It checks again
/// on every <c>+switch-master</c> notification, whenever the store reports a connection failure or a <c>READONLY</c>
/// answer, and every <see cref="RedisStateOptions.MasterCheckInterval"/>. While no checked master is known,
/// <see cref="Current"/> is null and the store fails closed.
/// </para>
/// </summary>
internal sealed partial class SentinelMaster : IDisposable
{
    private const string SwitchMasterChannel = "+switch-master";

    // CommandMap.Sentinel of 1.2.6 lacks AUTH, so a Sentinel password could not be sent; this is the 2.x list.
    private static readonly CommandMap SentinelCommands = CommandMap.Create(
        new HashSet<string>(StringComparer.OrdinalIgnoreCase) { "auth", "ping", "info", "role", "sentinel", "subscribe", "psubscribe", "unsubscribe", "punsubscribe" },
        available: true);

    private readonly RedisStateOptions _options;
    private readonly Func<EndPoint, Task<ConnectionMultiplexer>> _connectData;
    private readonly Func<ConnectionMultiplexer, Task> _prepare;
    private readonly Action _switched;
    private readonly ILogger _logger;
    private readonly ConnectionMultiplexer _sentinels;
    private readonly SemaphoreSlim _checking = new(1, 1);
    private readonly TimeSpan _checkTimeout;
    private readonly TimeProvider _time;
    private ITimer? _timer;
    private DataConnection? _data;
    private int _requested;
    private bool _disposed;

    private SentinelMaster(
        RedisStateOptions options,
        ConnectionMultiplexer sentinels,
        Func<EndPoint, Task<ConnectionMultiplexer>> connectData,
        Func<ConnectionMultiplexer, Task> prepare,
        Action switched,
        TimeProvider time,
        ILogger logger)
    {
        _options = options;
        _sentinels = sentinels;
        _connectData = connectData;
        _prepare = prepare;
        _switched = switched;
        _time = time;
        _logger = logger;
        _checkTimeout = options.ConnectTimeout;
    }

    /// <summary>The data connection to the checked master, or null while there is none (start-up, failover).</summary>
    public ConnectionMultiplexer? Current => Volatile.Read(ref _data) is { Verified: true } data ? data.Connection : null;

    /// <summary>The checked master's address, or null while there is none.</summary>
    public EndPoint? CurrentMasterEndPoint => Volatile.Read(ref _data) is { Verified: true } data ? data.EndPoint : null;

    /// <summary>The master the data connection points at (checked or not), for messages.</summary>
    public string CurrentEndPoint => Volatile.Read(ref _data)?.EndPoint.ToString() ?? "none";

    /// <summary>
    /// Connects to the Sentinels (without failing when they are down), subscribes to <c>+switch-master</c>, and
    /// makes one attempt to find the master before returning.
    /// </summary>
    /// <param name="options">The store's options (Sentinels, service name, timeouts).</param>
    /// <param name="tls">The TLS policy, used when the Sentinels are reached over TLS (<see cref="RedisStateOptions.SentinelSsl"/>).</param>
    /// <param name="connectData">Opens a data connection to one node.</param>
    /// <param name="prepare">Runs on a new data connection to a checked master before it is handed out (subscriptions).</param>
    /// <param name="switched">Runs after the store moved to a master (or the same master was checked again after a gap).</param>
    /// <param name="time">The clock of the periodic check and of timeouts.</param>
    /// <param name="logger">Where master changes are logged.</param>
    public static async Task<SentinelMaster> StartAsync(
        RedisStateOptions options,
        RedisTls? tls,
        Func<EndPoint, Task<ConnectionMultiplexer>> connectData,
        Func<ConnectionMultiplexer, Task> prepare,
        Action switched,
        TimeProvider time,
        ILogger logger)
    {
        var sentinelSsl = options.SentinelSsl ?? options.Ssl;
        var config = new ConfigurationOptions
        {
            AbortOnConnectFail = false,
            CommandMap = SentinelCommands,
            TieBreaker = "",
            ConnectTimeout = (int)options.ConnectTimeout.TotalMilliseconds,
            SyncTimeout = Math.Max(1000, (int)options.ConnectTimeout.TotalMilliseconds),
            ConnectRetry = 1,
            KeepAlive = 5,
            ReconnectRetryPolicy = new LinearRetry(500),
            Password = options.SentinelPassword,
            Ssl = sentinelSsl,
        };
        if (sentinelSsl)
        {
            tls!.Apply(config);
        }

        foreach (var sentinel in options.Sentinels)
        {
            config.EndPoints.Add(RedisStateStore.ParseEndPoint(sentinel, RedisStateStore.DefaultSentinelPort));
        }

        var sentinels = await ConnectionMultiplexer.ConnectAsync(config).ConfigureAwait(false);
        var master = new SentinelMaster(options, sentinels, connectData, prepare, switched, time, logger);
        sentinels.ConnectionFailed += (_, e) => Log.SentinelConnectionFailed(logger, e.EndPoint?.ToString() ?? "?", e.FailureType.ToString());
        try
        {
            await sentinels.GetSubscriber().SubscribeAsync(SwitchMasterChannel, (_, message) => master.OnSwitchMaster(message)).ConfigureAwait(false);
        }
        catch (RedisException e)
        {
            // No Sentinel answers yet: the client subscribes when one does, and the periodic check covers the gap.
            Log.SentinelSubscribeFailed(logger, e.Message);
        }

        await master.CheckAsync().ConfigureAwait(false);
        master._timer = time.CreateTimer(static state => ((SentinelMaster)state!).RequestCheck(), master, options.MasterCheckInterval, options.MasterCheckInterval);
        return master;
    }

    /// <summary>Asks for a check soon (coalesced: at most one runs at a time, and one more follows if asked meanwhile).</summary>
    public void RequestCheck()
    {
        if (Interlocked.Exchange(ref _requested, 1) == 0)
        {
            _ = Task.Run(CheckAsync);
        }
    }

    /// <summary>The node answered <c>READONLY</c>: it is no longer the master. Stop handing it out and check now.</summary>
    public void ReportNotMaster()
    {
        if (Volatile.Read(ref _data) is { Verified: true } data)
        {
            data.Verified = false;
            Log.MasterLost(_logger, data.EndPoint.ToString()!, "it answered READONLY");
        }

        RequestCheck();
    }

    private async Task CheckAsync()
    {
        Interlocked.Exchange(ref _requested, 1);
        try
        {
            await _checking.WaitAsync().ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
            return;
        }

        try
        {
            while (Interlocked.Exchange(ref _requested, 0) == 1 && !Volatile.Read(ref _disposed))
            {
                await CheckOnceAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException or IOException)
        {
            Log.CheckFailed(_logger, e.Message);
        }
        finally
        {
            _checking.Release();
        }
    }

    private async Task CheckOnceAsync()
    {
        var named = await AskSentinelsAsync().ConfigureAwait(false);
        var data = Volatile.Read(ref _data);
        if (named is null)
        {
            // No Sentinel answers: that alone says nothing about the master. Keep using it while it says it is one.
            if (data is not null)
            {
                await VerifyAsync(data, "no Sentinel answers").ConfigureAwait(false);
            }

            return;
        }

        if (data is not null && data.EndPoint.Equals(named))
        {
            await VerifyAsync(data, "the Sentinels name it").ConfigureAwait(false);
            return;
        }

        // The Sentinels name another node: stop using the old one at once, then move.
        if (data is { Verified: true })
        {
            data.Verified = false;
            Log.MasterLost(_logger, data.EndPoint.ToString()!, $"the Sentinels now name {named}");
        }

        var connection = await _connectData(named).ConfigureAwait(false);
        var candidate = new DataConnection(connection, named);
        if (!await IsMasterAsync(candidate).ConfigureAwait(false))
        {
            Log.NotAMaster(_logger, named.ToString()!);
            connection.Dispose();
            return;
        }

        await _prepare(connection).ConfigureAwait(false);
        if (Volatile.Read(ref _disposed))
        {
            connection.Dispose();
            return;
        }

        candidate.Verified = true;
        var old = Interlocked.Exchange(ref _data, candidate);
        Log.MasterFound(_logger, _options.ServiceName!, named.ToString()!);
        _switched();
        if (old is not null)
        {
            // Requests still in flight on the old connection finish or fail first; it is closed a little later.
            _ = CloseLaterAsync(old.Connection);
        }
    }

    private async Task VerifyAsync(DataConnection data, string why)
    {
        var wasVerified = data.Verified;
        var isMaster = await IsMasterAsync(data).ConfigureAwait(false);
        data.Verified = isMaster;
        if (wasVerified && !isMaster)
        {
            Log.MasterLost(_logger, data.EndPoint.ToString()!, "it does not answer as master");
        }
        else if (!wasVerified && isMaster)
        {
            Log.MasterFound(_logger, _options.ServiceName!, $"{data.EndPoint} ({why})");
            _switched();
        }
    }

    /// <summary>The first answer of <c>SENTINEL get-master-addr-by-name</c> among the Sentinels, or null.</summary>
    private async Task<EndPoint?> AskSentinelsAsync()
    {
        foreach (var endpoint in _sentinels.GetEndPoints())
        {
            var server = _sentinels.GetServer(endpoint);
            if (!server.IsConnected)
            {
                continue;
            }

            try
            {
                var named = await server.SentinelGetMasterAddressByNameAsync(_options.ServiceName).WaitAsync(_checkTimeout, _time).ConfigureAwait(false);
                if (named is not null)
                {
                    return named;
                }

                Log.UnknownService(_logger, endpoint.ToString()!, _options.ServiceName!);
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                Log.SentinelFailed(_logger, endpoint.ToString()!, e.Message);
            }
        }

        return null;
    }

    /// <summary>Asks the node itself (<c>ROLE</c>): only a node that answers <c>master</c> is used.</summary>
    private async Task<bool> IsMasterAsync(DataConnection data)
    {
        try
        {
            // ROLE, not INFO: the client allows INFO through IServer only in admin mode.
            var role = await data.Connection.GetDatabase().ExecuteAsync("ROLE").WaitAsync(_checkTimeout, _time).ConfigureAwait(false);
            return !role.IsNull && ((RedisResult[])role!) is [var first, ..] && (string?)first == "master";
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            return false;
        }
    }

    private async Task CloseLaterAsync(ConnectionMultiplexer old)
    {
        await Task.Delay(_options.OperationTimeout + TimeSpan.FromSeconds(1), _time).ConfigureAwait(false);
        old.Dispose();
    }

    private void OnSwitchMaster(RedisValue message)
    {
        // "<name> <old ip> <old port> <new ip> <new port>"
        var text = (string?)message ?? "";
        var space = text.IndexOf(' ', StringComparison.Ordinal);
        if (space > 0 && string.Equals(text[..space], _options.ServiceName, StringComparison.Ordinal))
        {
            Log.SwitchMaster(_logger, text);
            RequestCheck();
        }
    }

    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        _timer?.Dispose();
        _sentinels.Dispose();
        Volatile.Read(ref _data)?.Connection.Dispose();
    }

    private sealed class DataConnection(ConnectionMultiplexer connection, EndPoint endPoint)
    {
        private volatile bool _verified;

        public ConnectionMultiplexer Connection { get; } = connection;

        public EndPoint EndPoint { get; } = endPoint;

        public bool Verified
        {
            get => _verified;
            set => _verified = value;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3010, Level = LogLevel.Information, Message = "Redis Sentinel: master of '{ServiceName}' is {EndPoint}; state operations use it")]
        public static partial void MasterFound(ILogger logger, string serviceName, string endPoint);

        [LoggerMessage(EventId = 3011, Level = LogLevel.Warning, Message = "Redis Sentinel: no longer using {EndPoint} as master ({Reason}); state operations fail closed until a master is found")]
        public static partial void MasterLost(ILogger logger, string endPoint, string reason);

        [LoggerMessage(EventId = 3012, Level = LogLevel.Warning, Message = "Redis Sentinel: {EndPoint} is named master but does not answer as master; not used")]
        public static partial void NotAMaster(ILogger logger, string endPoint);

        [LoggerMessage(EventId = 3013, Level = LogLevel.Information, Message = "Redis Sentinel: +switch-master {Message}")]
        public static partial void SwitchMaster(ILogger logger, string message);

        [LoggerMessage(EventId = 3014, Level = LogLevel.Warning, Message = "Redis Sentinel {EndPoint} did not answer: {Reason}")]
        public static partial void SentinelFailed(ILogger logger, string endPoint, string reason);

        [LoggerMessage(EventId = 3015, Level = LogLevel.Warning, Message = "Redis Sentinel {EndPoint} does not monitor '{ServiceName}'")]
        public static partial void UnknownService(ILogger logger, string endPoint, string serviceName);

        [LoggerMessage(EventId = 3016, Level = LogLevel.Warning, Message = "Redis Sentinel connection to {EndPoint} failed ({FailureType})")]
        public static partial void SentinelConnectionFailed(ILogger logger, string endPoint, string failureType);

        [LoggerMessage(EventId = 3017, Level = LogLevel.Warning, Message = "Redis Sentinel: subscribing to +switch-master failed: {Reason}; retried on reconnect, and the periodic check covers the gap")]
        public static partial void SentinelSubscribeFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 3018, Level = LogLevel.Warning, Message = "Redis Sentinel: checking the master failed: {Reason}")]
        public static partial void CheckFailed(ILogger logger, string reason);
    }
}
