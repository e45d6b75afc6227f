namespace TokenBroker.State.Redis;

/// <summary>
/// The Redis state store (<c>TokenBroker:State:Redis</c>). Used when <c>TokenBroker:State:Store</c> is <c>redis</c>.
/// </summary>
public sealed class RedisStateOptions
{
    /// <summary>
    /// Redis nodes as <c>host:port</c>. One entry for a single server; for Redis Cluster any subset of the masters (the
    /// rest is discovered); for a Sentinel-managed group, the master and its replicas (the client routes writes to
    /// whichever node reports the master role). Required for the redis store. Default: none.
    /// </summary>
    public List<string> Endpoints { get; set; } = [];

    /// <summary>The Redis password (AUTH). Pass it through an environment variable or a secret file, never a committed file. Default: none.</summary>
    public string? Password { get; set; }

    /// <summary>Connect with TLS. Default: false.</summary>
    public bool Ssl { get; set; }

    /// <summary>Prefix of every key and channel, so several brokers can share one Redis. 1 to 32 characters of <c>[A-Za-z0-9:_-]</c>. Default: <c>tb:</c>.</summary>
    public string KeyPrefix { get; set; } = "tb:";

    /// <summary>
    /// The budget of one state operation: slower answers count as failures and the exchange answers 503 (fail
    /// closed). Between 10 milliseconds and 10 seconds. Default: 250 milliseconds.
    /// </summary>
    public TimeSpan OperationTimeout { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Timeout of one connection attempt. Between 100 milliseconds and 30 seconds. Default: 2 seconds.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// How long the circuit breaker stays open after Redis failed (at least half of the last 4 or more operations
    /// within 5 seconds): operations are refused at once, then one trial operation decides. Between 100
    /// milliseconds and 60 seconds. Default: 1 second.
    /// </summary>
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(1);
}
