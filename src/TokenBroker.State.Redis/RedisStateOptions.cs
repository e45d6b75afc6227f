namespace TokenBroker.State.Redis;

/// <summary>
/// The Redis state store (<c>TokenBroker:State:Redis</c>). Used when <c>TokenBroker:State:Store</c> is <c>redis</c>.
/// </summary>
public sealed class RedisStateOptions
{
    /// <summary>
    /// Redis nodes as <c>host:port</c> (port 6379 when omitted). One entry for a single server; for Redis Cluster any
    /// subset of the masters (the rest is discovered). Either this or <see cref="Sentinels"/> is required for the
    /// redis store, never both. Default: none.
    /// </summary>
    public List<string> Endpoints { get; set; } = [];

    /// <summary>
    /// Redis Sentinels as <c>host:port</c> (port 26379 when omitted). The store asks them for the master of
    /// <see cref="ServiceName"/>, connects to it, checks that it reports the master role, and follows failovers.
    /// Either this or <see cref="Endpoints"/> is required for the redis store, never both. Default: none.
    /// </summary>
    public List<string> Sentinels { get; set; } = [];

    /// <summary>The name the Sentinels monitor the master under (<c>sentinel monitor NAME ...</c>). Required with <see cref="Sentinels"/>, not allowed without. Default: none.</summary>
    public string? ServiceName { get; set; }

    /// <summary>The Sentinels' own password (their <c>requirepass</c>), when they have one. Only with <see cref="Sentinels"/>. Default: none.</summary>
    public string? SentinelPassword { get; set; }

    /// <summary>Connect to the Sentinels with TLS. Only with <see cref="Sentinels"/>. Default: the value of <see cref="Ssl"/>.</summary>
    public bool? SentinelSsl { get; set; }

    /// <summary>
    /// With <see cref="Sentinels"/>: how often the store asks the Sentinels for the master and checks its role, in
    /// addition to following <c>+switch-master</c> notifications and re-checking after connection failures and
    /// <c>READONLY</c> answers. Between 100 milliseconds and 60 seconds. Default: 1 second.
    /// </summary>
    public TimeSpan MasterCheckInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The password of the Redis data nodes (AUTH). Pass it through an environment variable or a secret file, never a committed file. Default: none.</summary>
    public string? Password { get; set; }

    /// <summary>Connect to the Redis data nodes with TLS. Default: false.</summary>
    public bool Ssl { get; set; }

    /// <summary>
    /// Path of a PEM file of one or more CA certificates. When set, the certificate chain of every Redis node (and
    /// Sentinel) reached over TLS must build to one of these roots only, and the system store is not consulted; the
    /// certificate must still be valid for the host name or IP address connected to. Only with <see cref="Ssl"/> or
    /// <see cref="SentinelSsl"/>; read at start (a restart picks up a new file). Default: none (the system store).
    /// </summary>
    public string? CaCertificateFile { get; set; }

    /// <summary>
    /// Path of a PEM certificate presented to Redis over TLS (mutual TLS, Redis's <c>tls-auth-clients yes</c>),
    /// to the data nodes and to Sentinels reached over TLS. Requires <see cref="ClientKeyFile"/>; only with
    /// <see cref="Ssl"/> or <see cref="SentinelSsl"/>; read at start. Default: none (no client certificate).
    /// </summary>
    public string? ClientCertificateFile { get; set; }

    /// <summary>Path of the PEM private key of <see cref="ClientCertificateFile"/> (unencrypted PKCS#8, PKCS#1 or SEC1). Required with it, not allowed without. Default: none.</summary>
    public string? ClientKeyFile { get; set; }

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
