using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TokenBroker.State.Redis;
using TokenBroker.Testing;

namespace TokenBroker.State.Tests;

/// <summary>
/// TLS to real <c>redis-server</c>s that listen on a TLS port only (no plain-text port to fall back to), with
/// certificates from a private CA made for the run: the store's SE.Redis connection and the exchange's direct
/// connection both carry traffic over TLS with the CA pinned, present the client certificate when Redis requires
/// one, and fail closed for a certificate from another CA, a certificate for another name, and a missing client
/// certificate.
/// </summary>
[TestFixture]
public sealed class RedisTlsTests
{
    private TestPki _pki = null!;
    private TestPki.TestCa _ca = null!;
    private TestPki.TestCa _otherCa = null!;
    private (string CertFile, string KeyFile) _client;
    private RedisServer _oneWay = null!;
    private RedisServer _mutual = null!;
    private RedisServer _fromOtherCa = null!;
    private RedisServer _otherName = null!;
    private RedisServer _viaIntermediate = null!;
    private RedisServer _expired = null!;

    [OneTimeSetUp]
    public async Task StartServers()
    {
        RedisServer.RequireRedis();
        _pki = new TestPki();
        _ca = _pki.CreateCa("redis-ca");
        _otherCa = _pki.CreateCa("other-ca");
        var server = _ca.Issue("redis", ["localhost"], [IPAddress.Loopback]);
        var foreign = _otherCa.Issue("redis-foreign", ["localhost"], [IPAddress.Loopback]);
        var misnamed = _ca.Issue("redis-misnamed", ["other.example"], []);
        var expired = _ca.Issue("redis-expired", ["localhost"], [IPAddress.Loopback], expired: true);
        var intermediate = _ca.IssueIntermediate("redis-intermediate").Issue("redis-via-intermediate", ["localhost"], [IPAddress.Loopback]);
        _client = _ca.Issue("tokenbroker-client", [], [], server: false);

        RedisTlsFiles Files((string CertFile, string KeyFile) cert, string? cliCa = null) =>
            new(cert.CertFile, cert.KeyFile, _ca.CertificateFile, _client.CertFile, _client.KeyFile, cliCa);

        _oneWay = await RedisServer.StartTlsAsync(Files(server), authClients: false);
        _mutual = await RedisServer.StartTlsAsync(Files(server), authClients: true);
        _fromOtherCa = await RedisServer.StartTlsAsync(Files(foreign, _otherCa.CertificateFile), authClients: false);
        _otherName = await RedisServer.StartTlsAsync(Files(misnamed), authClients: false);
        _viaIntermediate = await RedisServer.StartTlsAsync(Files(intermediate), authClients: false);
        _expired = await RedisServer.StartTlsAsync(Files(expired), authClients: false);
    }

    [OneTimeTearDown]
    public async Task StopServers()
    {
        foreach (var server in new[] { _oneWay, _mutual, _fromOtherCa, _otherName, _viaIntermediate, _expired })
        {
            if (server is not null)
            {
                await server.DisposeAsync();
            }
        }

        _pki?.Dispose();
    }

    private Task<RedisStateStore> ConnectAsync(RedisServer server, bool clientCertificate, string? caFile = "", string? keyPrefix = null) =>
        RedisStores.ConnectAsync([server.EndPoint], o =>
        {
            o.KeyPrefix = keyPrefix ?? o.KeyPrefix;
            o.Ssl = true;
            o.CaCertificateFile = caFile == "" ? _ca.CertificateFile : caFile;
            o.ConnectTimeout = TimeSpan.FromSeconds(1);
            if (clientCertificate)
            {
                o.ClientCertificateFile = _client.CertFile;
                o.ClientKeyFile = _client.KeyFile;
            }
        });

    private RedisTls Tls(string? caFile, bool clientCertificate, ILogger? logger = null) => RedisTls.Create(
        new RedisStateOptions
        {
            Ssl = true,
            CaCertificateFile = caFile,
            ClientCertificateFile = clientCertificate ? _client.CertFile : null,
            ClientKeyFile = clientCertificate ? _client.KeyFile : null,
        },
        logger ?? NullLogger.Instance);

    private static Task<RespPipe> ConnectPipeAsync(RedisServer server, RedisTls tls) =>
        RespPipe.ConnectAsync(RedisStateStore.ParseEndPoint(server.EndPoint), null, tls, "tokenbroker:tls-test", TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(5));

    [Test]
    public async Task WithThePinnedCa_TheExchangeWriteReadsRevocationsAndNotifications_AllRunOverTls()
    {
        // Two replicas of one broker (one key prefix).
        var prefix = "t" + Guid.NewGuid().ToString("N")[..12] + ":";
        using var store = await ConnectAsync(_oneWay, clientCertificate: false, keyPrefix: prefix);
        using var other = await ConnectAsync(_oneWay, clientCertificate: false, keyPrefix: prefix);
        var notified = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var key = StateStoreContract.ReplayKey("tls");
        var record = StateStoreContract.Record(key);

        // The exchange's write: on a single server it goes over the direct connection, which must be TLS.
        Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), record, CancellationToken.None), Is.True);
        Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Is.False, "replayed");
        Assert.That(store.DirectConnection, Is.Not.Null, "the write went over the direct connection");
        Assert.That(store.DirectConnection!.IsTls, Is.True);
        Assert.That(store.DirectConnection.Broken, Is.Null);
        var clients = await _oneWay.CliAsync("client", "list");
        Assert.That(clients, Does.Contain("name=tokenbroker:exchange "), "the direct connection, as Redis sees it");
        Assert.That(clients, Does.Contain("name=tokenbroker "), "the SE.Redis connection, as Redis sees it");
        Assert.That((await _oneWay.CliAsync("exists", store.ReplayKey(key), store.RecordKey(record.Jti))).Trim(), Is.EqualTo("2"));

        // Reads and revocations go through SE.Redis.
        Assert.That((await store.GetIssuedAsync(record.Jti, CancellationToken.None))?.Subject, Is.EqualTo(record.Subject));
        Assert.That(await store.RevokeAsync(record.Jti, DateTimeOffset.UtcNow, CancellationToken.None), Is.True);
        Assert.That((await store.GetIssuedAsync(record.Jti, CancellationToken.None))?.RevokedAt, Is.Not.Null);

        // Pub/sub: another replica's block reaches this one.
        store.BlocksChanged += () => notified.TrySetResult();
        var block = new Block { Id = "blk_tls", Selector = new BlockSelector { RunId = "1" }, CreatedAt = DateTimeOffset.UtcNow, CreatedBy = "t" };
        await other.AddBlockAsync(block, CancellationToken.None);
        Assert.That(await Task.WhenAny(notified.Task, Task.Delay(TimeSpan.FromSeconds(5))), Is.SameAs(notified.Task), "notified over TLS within 5 s");
        Assert.That((await store.GetBlocksAsync(CancellationToken.None)).Blocks.Select(b => b.Id), Does.Contain("blk_tls"));
    }

    [Test]
    public async Task WithClientCertificatesRequired_TheStorePresentsItsCertificate_OnEveryConnection()
    {
        using var store = await ConnectAsync(_mutual, clientCertificate: true);
        var key = StateStoreContract.ReplayKey("mtls");

        Assert.That(await store.PingAsync(CancellationToken.None), Is.True);
        Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Is.True);
        Assert.That(store.DirectConnection, Is.Not.Null.And.Property(nameof(RespPipe.IsTls)).True);
        Assert.That(await _mutual.CliAsync("client", "list"), Does.Contain("name=tokenbroker:exchange ").And.Contain("name=tokenbroker "));
    }

    [Test]
    public async Task WithClientCertificatesRequired_TheStoreFailsClosed_WithoutOne()
    {
        using var store = await ConnectAsync(_mutual, clientCertificate: false);
        var key = StateStoreContract.ReplayKey("no-client-cert");

        Assert.That(async () => await store.PingAsync(CancellationToken.None), Throws.InstanceOf<StateUnavailableException>());
        Assert.That(async () => await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Throws.InstanceOf<StateUnavailableException>());
        Assert.That(store.DirectConnection, Is.Null);

        // The direct connection on its own: Redis refuses the handshake (TLS 1.3 reports it at the first read).
        using var tls = Tls(_ca.CertificateFile, clientCertificate: false);
        Assert.That(async () => (await ConnectPipeAsync(_mutual, tls)).Dispose(), Throws.InstanceOf<IOException>().Or.InstanceOf<AuthenticationException>());
        Assert.That((await _mutual.CliAsync("dbsize")).Trim(), Is.EqualTo("0"), "nothing was written");
    }

    [Test]
    public async Task AServerCertificateFromAnIntermediateCa_ThatTheServerSends_BuildsToThePinnedRoot()
    {
        // The CA file holds the root only; the server sends its certificate followed by the intermediate.
        using var store = await ConnectAsync(_viaIntermediate, clientCertificate: false);
        var key = StateStoreContract.ReplayKey("intermediate");

        Assert.That(await store.PingAsync(CancellationToken.None), Is.True);
        Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Is.True);
        Assert.That(store.DirectConnection, Is.Not.Null.And.Property(nameof(RespPipe.IsTls)).True);
    }

    public static IEnumerable<TestCaseData> UntrustedServers()
    {
        yield return new TestCaseData("fromOtherCa", "", "does not build to a root of CaCertificateFile: PartialChain").SetName("AServerCertificateFromAnotherCa_WithOurCaPinned_FailsClosed");
        yield return new TestCaseData("fromOtherCa", null, "does not build to a root of the system store: PartialChain").SetName("AServerCertificateFromAPrivateCa_WithTheSystemStore_FailsClosed");
        yield return new TestCaseData("otherName", "", "not valid for the host name or address").SetName("AServerCertificateForAnotherName_FromThePinnedCa_FailsClosed");
        yield return new TestCaseData("expired", "", "does not build to a root of CaCertificateFile: NotTimeValid").SetName("AnExpiredServerCertificate_FromThePinnedCa_FailsClosed");
    }

    [TestCaseSource(nameof(UntrustedServers))]
    public async Task AnUntrustedServer_IsNeverUsed(string which, string? caFile, string loggedReason)
    {
        var server = which switch
        {
            "otherName" => _otherName,
            "expired" => _expired,
            _ => _fromOtherCa,
        };
        using var store = await ConnectAsync(server, clientCertificate: true, caFile);
        var key = StateStoreContract.ReplayKey("untrusted");

        Assert.That(async () => await store.PingAsync(CancellationToken.None), Throws.InstanceOf<StateUnavailableException>());
        Assert.That(async () => await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Throws.InstanceOf<StateUnavailableException>());
        Assert.That(async () => await store.GetIssuedAsync(StateStoreContract.Jti(key), CancellationToken.None), Throws.InstanceOf<StateUnavailableException>());
        Assert.That(store.DirectConnection, Is.Null);

        var logger = new CapturingLogger();
        using var tls = Tls(caFile == "" ? _ca.CertificateFile : caFile, clientCertificate: true, logger);
        Assert.That(async () => (await ConnectPipeAsync(server, tls)).Dispose(), Throws.InstanceOf<AuthenticationException>());
        Assert.That(logger.Lines, Has.Some.Contains("3008 Redis TLS: refused the certificate of 127.0.0.1").And.Contains(loggedReason));

        // redis-cli refuses the expired certificate too; this check is about the server's data, not its certificate.
        Assert.That((await server.CliAsync("--insecure", "dbsize")).Trim(), Is.EqualTo("0"), "nothing was written");
    }

    [Test]
    public async Task TheUntrustedServers_AreRefusedOnlyForTheReasonUnderTest()
    {
        // Controls for the cases above: the foreign server is accepted with its own CA pinned, and the misnamed one
        // when the name it was issued for is asked for; so the refusals above are the trust and the name, nothing else.
        using (var foreignCa = Tls(_otherCa.CertificateFile, clientCertificate: true))
        using (var pipe = await ConnectPipeAsync(_fromOtherCa, foreignCa))
        {
            Assert.That(pipe.IsTls, Is.True);
        }

        using var ourCa = Tls(_ca.CertificateFile, clientCertificate: true);
        using var socket = new TcpClient();
        await socket.ConnectAsync(IPAddress.Loopback, _otherName.Port);
        await using var stream = new SslStream(socket.GetStream());
        await stream.AuthenticateAsClientAsync(ourCa.ClientOptions("other.example"));
        Assert.That(stream.IsAuthenticated, Is.True);
    }

    [Test]
    public void TheValidation_RejectsAMissingCertificateAndANameMismatch_WhateverTheChain()
    {
        using var tls = Tls(_ca.CertificateFile, clientCertificate: false);
        Assert.That(tls.ValidateServerCertificate(this, null, null, SslPolicyErrors.None), Is.False);
        Assert.That(tls.ValidateServerCertificate(this, _ca.Certificate, null, SslPolicyErrors.RemoteCertificateNameMismatch), Is.False);
    }
}

/// <summary>
/// A Sentinel-managed group where the master, the replica and the Sentinel speak TLS only and require client
/// certificates from the private CA: the store finds the master through the Sentinel and writes to it, over TLS on
/// every connection kind.
/// </summary>
[TestFixture]
public sealed class RedisSentinelTlsTests
{
    private TestPki _pki = null!;
    private TestPki.TestCa _ca = null!;
    private (string CertFile, string KeyFile) _client;
    private RedisSentinelGroup _group = null!;

    [OneTimeSetUp]
    public async Task StartGroup()
    {
        RedisServer.RequireRedis();
        _pki = new TestPki();
        _ca = _pki.CreateCa("sentinel-ca");
        var node = _ca.Issue("node", ["localhost"], [IPAddress.Loopback]);
        _client = _ca.Issue("tokenbroker-client", [], [], server: false);
        _group = await RedisSentinelGroup.StartAsync(tls: new RedisTlsFiles(node.CertFile, node.KeyFile, _ca.CertificateFile, _client.CertFile, _client.KeyFile));
    }

    [OneTimeTearDown]
    public async Task StopGroup()
    {
        if (_group is not null)
        {
            await _group.DisposeAsync();
        }

        _pki?.Dispose();
    }

    private Task<RedisStateStore> ConnectAsync(bool clientCertificate) =>
        SentinelStores.ConnectAsync(_group, o =>
        {
            o.Ssl = true; // SentinelSsl follows it
            o.CaCertificateFile = _ca.CertificateFile;
            o.ConnectTimeout = TimeSpan.FromSeconds(1);
            if (clientCertificate)
            {
                o.ClientCertificateFile = _client.CertFile;
                o.ClientKeyFile = _client.KeyFile;
            }
        });

    [Test]
    public async Task ThroughATlsSentinel_TheStoreFindsTheMaster_AndWritesToItOverTls()
    {
        using var store = await ConnectAsync(clientCertificate: true);
        var key = StateStoreContract.ReplayKey("sentinel-tls");
        var record = StateStoreContract.Record(key);

        // The first check may still be under way right after start-up; the store answers once it found the master.
        await RedisSentinelGroup.WaitAsync(
            async () =>
            {
                try
                {
                    return await store.PingAsync(CancellationToken.None);
                }
                catch (StateUnavailableException)
                {
                    return false;
                }
            },
            "the store found no master through the TLS Sentinel");

        Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), record, CancellationToken.None), Is.True);
        Assert.That(store.DirectConnection, Is.Not.Null.And.Property(nameof(RespPipe.IsTls)).True);
        Assert.That((await _group.Master.CliAsync("exists", store.ReplayKey(key))).Trim(), Is.EqualTo("1"));
        Assert.That(await _group.Master.CliAsync("client", "list"), Does.Contain("name=tokenbroker:exchange ").And.Contain("name=tokenbroker "));
        Assert.That((await store.GetIssuedAsync(record.Jti, CancellationToken.None))?.Subject, Is.EqualTo(record.Subject));
    }

    [Test]
    public async Task ThroughATlsSentinel_WithoutAClientCertificate_TheStoreFailsClosed()
    {
        using var store = await ConnectAsync(clientCertificate: false);
        var key = StateStoreContract.ReplayKey("sentinel-no-cert");

        Assert.That(async () => await store.PingAsync(CancellationToken.None), Throws.InstanceOf<StateUnavailableException>());
        Assert.That(async () => await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Throws.InstanceOf<StateUnavailableException>());
        Assert.That(store.DirectConnection, Is.Null);
    }
}

/// <summary>Keeps every log line as "event-id message".</summary>
internal sealed class CapturingLogger : ILogger
{
    private readonly List<string> _lines = [];

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_lines)
        {
            _lines.Add($"{eventId.Id} {formatter(state, exception)}");
        }
    }
}

/// <summary>
/// A three-master Redis Cluster on TLS ports only (cluster bus too) with client certificates required: the store
/// follows the cluster's topology and redirections over TLS, with the CA pinned, to every master.
/// </summary>
[TestFixture]
public sealed class RedisClusterTlsTests
{
    [Test]
    public async Task OnATlsCluster_TheStoreWritesToEveryMasterOverTls()
    {
        RedisServer.RequireRedis();
        using var pki = new TestPki();
        var ca = pki.CreateCa("cluster-ca");
        var node = ca.Issue("node", ["localhost"], [IPAddress.Loopback]);
        var client = ca.Issue("tokenbroker-client", [], [], server: false);
        await using var cluster = await RedisCluster.StartAsync(new RedisTlsFiles(node.CertFile, node.KeyFile, ca.CertificateFile, client.CertFile, client.KeyFile));
        using var store = await RedisStores.ConnectAsync([cluster.Nodes[0].EndPoint], o =>
        {
            o.Ssl = true;
            o.CaCertificateFile = ca.CertificateFile;
            o.ClientCertificateFile = client.CertFile;
            o.ClientKeyFile = client.KeyFile;
        });

        for (var i = 0; i < 24; i++)
        {
            var key = StateStoreContract.ReplayKey("cluster-tls" + i);
            var record = StateStoreContract.Record(key);
            Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), record, CancellationToken.None), Is.True);
            Assert.That((await store.GetIssuedAsync(record.Jti, CancellationToken.None))?.Jti, Is.EqualTo(record.Jti));
        }

        // Each master answers SCAN for its own slots only: all three took writes, so the store reached each over TLS.
        foreach (var master in cluster.Nodes)
        {
            Assert.That(await master.CliAsync("--scan", "--pattern", "*:t:*"), Does.Contain(":t:"), master.EndPoint);
        }

        Assert.That(store.DirectConnection, Is.Null, "on a Cluster the write goes through SE.Redis");
    }
}
