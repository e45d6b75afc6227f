using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using NUnit.Framework;

namespace TokenBroker.Testing;

/// <summary>
/// A real <c>redis-server</c> on a free loopback port, in a temporary directory, with no persistence. Tests can
/// stop and restart it on the same port (to exercise fail-closed behaviour and recovery) and run commands with
/// <c>redis-cli</c>. Under <c>CI=true</c> a missing redis-server fails the test; elsewhere it is ignored with a hint.
/// </summary>
internal sealed class RedisServer : IAsyncDisposable
{
    private readonly string _directory;
    private readonly string[] _extraArgs;
    private readonly string? _sentinelConfig;
    private readonly RedisTlsFiles? _tls;
    private readonly StringBuilder _output = new();
    private Process? _process;

    private RedisServer(int port, string directory, string[] extraArgs, string? sentinelConfig = null, RedisTlsFiles? tls = null)
    {
        Port = port;
        _directory = directory;
        _extraArgs = extraArgs;
        _sentinelConfig = sentinelConfig;
        _tls = tls;
    }

    public int Port { get; }

    public string EndPoint => $"127.0.0.1:{Port}";

    /// <summary>The password <see cref="CliAsync"/> authenticates with, for a server started with <c>--requirepass</c>.</summary>
    public string? Password { get; set; }

    /// <summary>
    /// A server that speaks TLS only (<c>--port 0 --tls-port PORT</c>) with <paramref name="tls"/>'s certificate, and
    /// requires client certificates issued by its CA when <paramref name="authClients"/>. <see cref="CliAsync"/>
    /// connects with TLS and the client certificate. Under <c>CI=true</c> a redis-server built without TLS fails the
    /// test; elsewhere it is ignored with a hint.
    /// </summary>
    public static async Task<RedisServer> StartTlsAsync(RedisTlsFiles tls, bool authClients, params string[] extraArgs)
    {
        RequireRedis();
        var directory = Directory.CreateTempSubdirectory("tokenbroker-redis-tls-").FullName;
        string[] args = ["--tls-cert-file", tls.CertFile, "--tls-key-file", tls.KeyFile, "--tls-ca-cert-file", tls.CaFile, "--tls-auth-clients", authClients ? "yes" : "no", .. extraArgs];
        var server = new RedisServer(FreePort(), directory, args, tls: tls);
        await server.StartProcessAsync();
        return server;
    }

    public static async Task<RedisServer> StartAsync(params string[] extraArgs)
    {
        RequireRedis();
        var directory = Directory.CreateTempSubdirectory("tokenbroker-redis-").FullName;
        var server = new RedisServer(FreePort(), directory, extraArgs);
        await server.StartProcessAsync();
        return server;
    }

    /// <summary>
    /// A Sentinel (<c>redis-server sentinel.conf --sentinel</c>, which every redis-server binary supports) that
    /// monitors <paramref name="masterEndPoint"/> as <paramref name="serviceName"/> with quorum 1, a 1 s down-after
    /// and a 3 s failover timeout. Its configuration lives in its own temporary directory, since Sentinel rewrites it.
    /// With <paramref name="tls"/>, it listens on a TLS port only, requires client certificates, and reaches the
    /// data nodes over TLS with its own certificate.
    /// </summary>
    public static async Task<RedisServer> StartSentinelAsync(string serviceName, string masterEndPoint, string? password = null, string? masterPassword = null, RedisTlsFiles? tls = null)
    {
        RequireRedis();
        var directory = Directory.CreateTempSubdirectory("tokenbroker-sentinel-").FullName;
        var port = FreePort();
        var (host, masterPort) = (masterEndPoint[..masterEndPoint.LastIndexOf(':')], masterEndPoint[(masterEndPoint.LastIndexOf(':') + 1)..]);
        var config = Path.Combine(directory, "sentinel.conf");
        var listen = tls is null
            ? $"port {port}"
            : $"""
              port 0
              tls-port {port}
              tls-cert-file {tls.CertFile}
              tls-key-file {tls.KeyFile}
              tls-ca-cert-file {tls.CaFile}
              tls-auth-clients yes
              tls-replication yes
              """;
        await File.WriteAllTextAsync(config, $"""
            {listen}
            bind 127.0.0.1
            dir {directory}
            sentinel monitor {serviceName} {host} {masterPort} 1
            sentinel down-after-milliseconds {serviceName} 1000
            sentinel failover-timeout {serviceName} 3000
            {(password is null ? "" : $"requirepass {password}")}
            {(masterPassword is null ? "" : $"sentinel auth-pass {serviceName} {masterPassword}")}

            """);
        var sentinel = new RedisServer(port, directory, [], config, tls) { Password = password };
        await sentinel.StartProcessAsync();
        return sentinel;
    }

    /// <summary>Fails (CI) or ignores (elsewhere) the test when redis-server or redis-cli is not installed.</summary>
    public static void RequireRedis()
    {
        if (Which("redis-server") is not null && Which("redis-cli") is not null)
        {
            return;
        }

        const string message = "redis-server and redis-cli are required (Debian: apt-get install redis-server; scripts/test.sh installs it)";
        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
        {
            Assert.Fail(message);
        }

        Assert.Ignore(message);
    }

    /// <summary>Kills the server (no shutdown save): clients see the connection drop.</summary>
    public async Task StopAsync()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync();
        }

        _process?.Dispose();
        _process = null;
    }

    /// <summary>Starts the server again on the same port (empty: nothing is persisted).</summary>
    public Task RestartAsync() => StartProcessAsync();

    /// <summary>Runs <c>redis-cli -p PORT args...</c> and returns its output.</summary>
    public Task<string> CliAsync(params string[] args) => RunAsync("redis-cli", ["-h", "127.0.0.1", "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), .. (Password is null ? (string[])[] : ["-a", Password, "--no-auth-warning"]), .. TlsCliArgs(), .. args]);

    private string[] TlsCliArgs() => _tls is null
        ? []
        : ["--tls", "--cacert", _tls.CliCaFile ?? _tls.CaFile, .. (_tls.ClientCertFile is { } cert && _tls.ClientKeyFile is { } key ? (string[])["--cert", cert, "--key", key] : [])];

    public static async Task<string> RunAsync(string file, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (await output) + (await error);
    }

    private async Task StartProcessAsync()
    {
        var info = new ProcessStartInfo(Which("redis-server")!)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = _directory,
        };
        var port = Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        string[] args = _sentinelConfig is not null
            ? [_sentinelConfig, "--sentinel"]
            : [.. (_tls is null ? (string[])["--port", port] : ["--port", "0", "--tls-port", port]), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", _directory, "--daemonize", "no", .. _extraArgs];
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, e) => Remember(e.Data);
        _process.ErrorDataReceived += (_, e) => Remember(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            if (_process.HasExited)
            {
                await _process.WaitForExitAsync(); // the output is complete
                string output;
                lock (_output)
                {
                    output = _output.ToString();
                }

                if (_tls is not null && output.Contains("tls", StringComparison.OrdinalIgnoreCase) && output.Contains("Bad directive", StringComparison.Ordinal))
                {
                    const string message = "this redis-server is built without TLS (Debian's redis-server 7 has it; or build with BUILD_TLS=yes)";
                    if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
                    {
                        Assert.Fail(message);
                    }

                    Assert.Ignore(message);
                }

                throw new InvalidOperationException($"redis-server exited with {_process.ExitCode} on port {Port}: {output}");
            }

            if (await PingAsync())
            {
                return;
            }

            await Task.Delay(20);
        }

        throw new TimeoutException($"redis-server on port {Port} did not answer PING within 10 s");
    }

    private void Remember(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            if (_output.Length < 64 * 1024)
            {
                _output.AppendLine(line);
            }
        }
    }

    private async Task<bool> PingAsync()
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, Port);
            if (_tls is not null)
            {
                // A TLS port: listening is as far as a plain-text probe can tell (Redis listens once it is ready).
                return true;
            }

            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray());
            var buffer = new byte[64];
            var n = await stream.ReadAsync(buffer);
            // A server with a password answers, too: it asks for authentication.
            var answer = Encoding.ASCII.GetString(buffer, 0, n);
            return answer.StartsWith("+PONG", StringComparison.Ordinal) || answer.StartsWith("-NOAUTH", StringComparison.Ordinal);
        }
        catch (SocketException)
        {
            return false;
        }
        catch (IOException)
        {
            return false;
        }
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string? Which(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>
/// The PEM files of a TLS <see cref="RedisServer"/>: its certificate and key, the CA its clients' certificates must
/// come from, and what <c>redis-cli</c> uses (the client certificate, and the CA that issued the server's certificate
/// when that is not <see cref="CaFile"/>).
/// </summary>
internal sealed record RedisTlsFiles(string CertFile, string KeyFile, string CaFile, string? ClientCertFile = null, string? ClientKeyFile = null, string? CliCaFile = null);

/// <summary>Three cluster-enabled masters on loopback, joined with <c>redis-cli --cluster create</c>.</summary>
internal sealed class RedisCluster : IAsyncDisposable
{
    private RedisCluster(IReadOnlyList<RedisServer> nodes) => Nodes = nodes;

    public IReadOnlyList<RedisServer> Nodes { get; }

    /// <summary>Starts the cluster; with <paramref name="tls"/>, on TLS ports only (the cluster bus too), with client certificates required.</summary>
    public static async Task<RedisCluster> StartAsync(RedisTlsFiles? tls = null)
    {
        RedisServer.RequireRedis();
        var nodes = new List<RedisServer>();
        foreach (var _ in Enumerable.Range(0, 3))
        {
            // Each node gets its own directory, so each writes its own nodes.conf.
            string[] args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"];
            nodes.Add(await (tls is null ? RedisServer.StartAsync(args) : RedisServer.StartTlsAsync(tls, authClients: true, [.. args, "--tls-cluster", "yes", "--tls-replication", "yes"])));
        }

        var cluster = new RedisCluster(nodes);
        var created = tls is null
            ? await RedisServer.RunAsync("redis-cli", ["--cluster", "create", .. nodes.Select(n => n.EndPoint), "--cluster-replicas", "0", "--cluster-yes"])
            : await nodes[0].CliAsync(["--cluster", "create", .. nodes.Select(n => n.EndPoint), "--cluster-replicas", "0", "--cluster-yes"]);
        if (!created.Contains("All 16384 slots covered", StringComparison.Ordinal))
        {
            await cluster.DisposeAsync();
            throw new InvalidOperationException("redis-cli --cluster create failed: " + created);
        }

        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(20))
        {
            var states = await Task.WhenAll(nodes.Select(n => n.CliAsync("cluster", "info")));
            if (states.All(s => s.Contains("cluster_state:ok", StringComparison.Ordinal)))
            {
                return cluster;
            }

            await Task.Delay(100);
        }

        await cluster.DisposeAsync();
        throw new TimeoutException("the cluster did not reach cluster_state:ok within 20 s");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            await node.DisposeAsync();
        }
    }
}

/// <summary>
/// A Sentinel-managed group on loopback: one master, one replica (<c>--replicaof</c>) and one Sentinel that monitors
/// the master as <see cref="ServiceName"/> (quorum 1, down after 1 s). Killing the master makes the Sentinel promote
/// the replica within a few seconds.
/// </summary>
internal sealed class RedisSentinelGroup : IAsyncDisposable
{
    public const string ServiceName = "mymaster";

    private RedisSentinelGroup(RedisServer master, RedisServer replica, RedisServer sentinel)
    {
        Master = master;
        Replica = replica;
        Sentinel = sentinel;
    }

    public RedisServer Master { get; }

    public RedisServer Replica { get; }

    public RedisServer Sentinel { get; }

    /// <summary>
    /// Starts the group. With <paramref name="monitorReplica"/>, the Sentinel is (mis)configured to monitor the replica
    /// as the master; with <paramref name="writableReplica"/>, the replica accepts local writes, so a test can make it
    /// miss writes as if replication had lagged.
    /// </summary>
    public static async Task<RedisSentinelGroup> StartAsync(bool monitorReplica = false, bool writableReplica = false, string? dataPassword = null, string? sentinelPassword = null, RedisTlsFiles? tls = null)
    {
        RedisServer.RequireRedis();
        string[] auth = dataPassword is null ? [] : ["--requirepass", dataPassword, "--masterauth", dataPassword];

        // With TLS every node listens on a TLS port only and requires client certificates; replication runs over TLS.
        Task<RedisServer> Start(string[] args) => tls is null
            ? RedisServer.StartAsync(args)
            : RedisServer.StartTlsAsync(tls, authClients: true, [.. args, "--tls-replication", "yes"]);

        // No 5 s wait before the first (diskless) full sync of the replica.
        var master = await Start(["--repl-diskless-sync-delay", "0", .. auth]);
        master.Password = dataPassword;
        var replica = await Start(["--replicaof", "127.0.0.1", master.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--replica-read-only", writableReplica ? "no" : "yes", .. auth]);
        replica.Password = dataPassword;
        RedisServer? sentinel = null;
        try
        {
            await WaitAsync(async () => (await replica.CliAsync("info", "replication")).Contains("master_link_status:up", StringComparison.Ordinal), "the replica did not sync with the master");

            // Started after the replica is in sync, so the Sentinel's first INFO of the master lists the replica.
            sentinel = await RedisServer.StartSentinelAsync(ServiceName, monitorReplica ? replica.EndPoint : master.EndPoint, sentinelPassword, dataPassword, tls);
            var group = new RedisSentinelGroup(master, replica, sentinel);
            if (!monitorReplica)
            {
                await WaitAsync(async () => (await group.SentinelAsync("replicas", ServiceName)).Contains(replica.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal), "the Sentinel did not discover the replica");
            }

            return group;
        }
        catch
        {
            if (sentinel is not null)
            {
                await sentinel.DisposeAsync();
            }

            await replica.DisposeAsync();
            await master.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs <c>SENTINEL args...</c> on the Sentinel.</summary>
    public Task<string> SentinelAsync(params string[] args) => Sentinel.CliAsync(["sentinel", .. args]);

    /// <summary>Waits until <paramref name="key"/> reached the replica (replication is asynchronous).</summary>
    public Task WaitReplicatedAsync(string key) =>
        WaitAsync(async () => (await Replica.CliAsync("exists", key)).Trim() == "1", $"'{key}' did not reach the replica");

    /// <summary>Waits until the Sentinel names the replica as the master (after the master was killed).</summary>
    public Task WaitFailoverAsync() =>
        WaitAsync(async () => (await SentinelAsync("get-master-addr-by-name", ServiceName)).Contains(Replica.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal), "the Sentinel did not promote the replica", TimeSpan.FromSeconds(20));

    public static async Task WaitAsync(Func<Task<bool>> condition, string failure, TimeSpan? within = null)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < (within ?? TimeSpan.FromSeconds(10)))
        {
            if (await condition())
            {
                return;
            }

            await Task.Delay(50);
        }

        throw new TimeoutException(failure);
    }

    public async ValueTask DisposeAsync()
    {
        await Sentinel.DisposeAsync();
        await Replica.DisposeAsync();
        await Master.DisposeAsync();
    }
}
