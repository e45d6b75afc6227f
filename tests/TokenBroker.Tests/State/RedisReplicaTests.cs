using System.Diagnostics;
using System.Net;
using TokenBroker.Demo;
using TokenBroker.Testing;
using TokenBroker.Tests.Exchange;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.State;

/// <summary>
/// Two broker replicas (two in-process hosts on their own ports) behind one issuer URL, sharing one signing key,
/// one fake CI issuer and one real redis-server, as they would behind a load balancer.
/// </summary>
[TestFixture]
public sealed class RedisReplicaTests
{
    private const string Payments = "https://deploy.internal/payments";

    private readonly StateApi _api = StateApi.Create();
    private RedisServer _redis = null!;
    private FakeCiIssuer _issuer = null!;
    private string _keyFile = null!;
    private BrokerHarness _a = null!;
    private BrokerHarness _b = null!;
    private string _prefix = null!;

    [OneTimeSetUp]
    public async Task StartReplicas()
    {
        _redis = await RedisServer.StartAsync();
        _issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        _keyFile = StateApi.WriteKeyFile();
        var prefix = _prefix = "t" + Guid.NewGuid().ToString("N")[..12] + ":";
        var shared = _api.Settings(_keyFile);
        foreach (var (k, v) in RedisSettings.For(_redis.EndPoint, prefix))
        {
            shared[k] = v;
        }

        _a = await BrokerHarness.StartAsync(shared, _issuer);
        var forB = new Dictionary<string, string?>(shared) { ["TokenBroker:Issuer"] = _a.BrokerIssuer };
        _b = await BrokerHarness.StartAsync(forB, _issuer);
    }

    [OneTimeTearDown]
    public async Task StopReplicas()
    {
        await _b.DisposeAsync();
        await _a.DisposeAsync();
        await _issuer.DisposeAsync();
        await _redis.DisposeAsync();
        File.Delete(_keyFile);
    }

    [Test]
    public async Task TheSameJobTokenSentFortyTimesConcurrentlyToTwoReplicas_YieldsExactlyOneToken()
    {
        var token = _a.GitHubToken();
        using var start = new ManualResetEventSlim();
        var responses = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => Task.Run(async () =>
        {
            start.Wait();
            return await (i % 2 == 0 ? _a : _b).ExchangeAsync(token, Payments);
        })).ToList().Also(_ => start.Set()));

        Assert.That(responses.Count(r => r.Status == HttpStatusCode.OK), Is.EqualTo(1));
        Assert.That(responses.Where(r => r.Status != HttpStatusCode.OK).Select(r => r.ErrorId), Is.All.EqualTo("TB1118"));
        Assert.That(_a.Audit.Events.Concat(_b.Audit.Events).Count(e => e.Outcome == "refused" && e.ErrorId == "TB1118" && e.JobTokenSha256 == TokenBroker.Audit.AuditEvent.Hash(token)), Is.EqualTo(39),
            "every other attempt, on either replica, was refused as a replay");
    }

    [Test]
    public async Task ABlockCreatedOnReplicaA_RefusesExchangesOnReplicaB_WithinOneSecond()
    {
        var runId = "run-" + Guid.NewGuid().ToString("N")[..8];
        var before = await _b.ExchangeAsync(_a.GitHubToken(tweak: c => c["run_id"] = runId), Payments);
        Assert.That(before.Status, Is.EqualTo(HttpStatusCode.OK), before.Raw);

        var create = await _api.AdminAsync(_a, HttpMethod.Post, "/admin/blocks", $$"""{"run_id":"{{runId}}"}""");
        Assert.That(create.Status, Is.EqualTo(HttpStatusCode.Created), create.Raw);
        var clock = Stopwatch.StartNew();
        ExchangeResponse refused;
        do
        {
            refused = await _b.ExchangeAsync(_a.GitHubToken(tweak: c => c["run_id"] = runId), Payments);
        }
        while (refused.Status == HttpStatusCode.OK && clock.Elapsed < TimeSpan.FromSeconds(1));

        TestContext.Out.WriteLine($"replica B refused after {clock.ElapsedMilliseconds} ms");
        Assert.That(refused.ErrorId, Is.EqualTo("TB1206"), "replica B enforces the block within 1 s");
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(1)));

        await _api.AdminAsync(_a, HttpMethod.Delete, "/admin/blocks/" + create.Body["block"]!["id"]!.GetValue<string>());
    }

    [Test]
    public async Task ABlockWrittenWithoutANotification_IsStillEnforcedByThePeriodicResync()
    {
        // As if the pub/sub message were lost: the block is written straight into Redis, with no PUBLISH.
        var runId = "run-" + Guid.NewGuid().ToString("N")[..8];
        var block = $$"""{"id":"blk_silent","selector":{"run_id":"{{runId}}"},"created_at":"2026-01-01T00:00:00+00:00","created_by":"redis-cli"}""";
        await _redis.CliAsync("hset", _prefix + "blocks", "b:blk_silent", block);
        await _redis.CliAsync("hincrby", _prefix + "blocks", "#v", "1");

        var clock = Stopwatch.StartNew();
        ExchangeResponse refused;
        do
        {
            await Task.Delay(100);
            refused = await _b.ExchangeAsync(_a.GitHubToken(tweak: c => c["run_id"] = runId), Payments);
        }
        while (refused.Status == HttpStatusCode.OK && clock.Elapsed < TimeSpan.FromSeconds(3));

        TestContext.Out.WriteLine($"enforced after {clock.ElapsedMilliseconds} ms without a notification");
        Assert.That(refused.ErrorId, Is.EqualTo("TB1206"));
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(2.5)), "State:BlockSyncInterval is 1 s");
        await _api.AdminAsync(_a, HttpMethod.Delete, "/admin/blocks/blk_silent");
    }

    [Test]
    public async Task RevokingOnReplicaA_MakesIntrospectionOnReplicaB_Inactive()
    {
        var issued = await _a.ExchangeAsync(_a.GitHubToken(), Payments);
        Assert.That(issued.Status, Is.EqualTo(HttpStatusCode.OK), issued.Raw);
        var token = issued.AccessToken!;
        Assert.That((await _api.IntrospectAsync(_b, token)).Body["active"]!.GetValue<bool>(), Is.True, "replica B knows the token replica A issued");

        Assert.That((await StateApi.RevokeAsync(_a, token)).Status, Is.EqualTo(HttpStatusCode.OK));

        Assert.That((await _api.IntrospectAsync(_b, token)).Raw, Is.EqualTo("{\"active\":false}"));
    }
}

/// <summary>Killing and restarting the real redis-server under a running broker: fail closed, then recover by itself.</summary>
[TestFixture]
public sealed class RedisOutageTests
{
    private const string Payments = "https://deploy.internal/payments";

    [Test]
    public async Task WhileRedisIsDown_NothingIsIssuedOrActive_AndTheBrokerRecoversWhenRedisReturns()
    {
        var api = StateApi.Create();
        await using var redis = await RedisServer.StartAsync();
        var settings = api.Settings();
        foreach (var (k, v) in RedisSettings.For(redis.EndPoint))
        {
            settings[k] = v;
        }

        await using var broker = await BrokerHarness.StartAsync(settings);
        var issued = await broker.ExchangeAsync(broker.GitHubToken(), Payments);
        Assert.That(issued.Status, Is.EqualTo(HttpStatusCode.OK), issued.Raw);
        Assert.That((await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative))).StatusCode, Is.EqualTo(HttpStatusCode.OK));

        await redis.StopAsync();

        var refused = await broker.ExchangeAsync(broker.GitHubToken(), Payments);
        Assert.That(refused.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), refused.Raw);
        Assert.That(refused.ErrorId, Is.EqualTo("TB1302"));
        Assert.That(refused.Headers.RetryAfter?.Delta, Is.EqualTo(TimeSpan.FromSeconds(5)));
        Assert.That(refused.AccessToken, Is.Null);

        var introspection = await api.IntrospectAsync(broker, issued.AccessToken!);
        Assert.That(introspection.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), "introspection never says active when it cannot check");
        Assert.That(introspection.Raw, Does.Not.Contain("\"active\":true"));

        var revoke = await StateApi.RevokeAsync(broker, issued.AccessToken!);
        Assert.That(revoke.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), "a revocation that cannot be recorded is not acknowledged");

        var admin = await api.AdminAsync(broker, HttpMethod.Post, "/admin/blocks", """{"repository_id":"900101"}""");
        Assert.That(admin.ErrorId, Is.EqualTo("TB1302"));

        var ready = await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative));
        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        Assert.That(await ready.Content.ReadAsStringAsync(), Does.Contain("state:"));

        await redis.RestartAsync();
        var clock = Stopwatch.StartNew();
        ExchangeResponse recovered;
        do
        {
            await Task.Delay(200);
            recovered = await broker.ExchangeAsync(broker.GitHubToken(), Payments);
        }
        while (recovered.Status != HttpStatusCode.OK && clock.Elapsed < TimeSpan.FromSeconds(15));

        TestContext.Out.WriteLine($"exchanges recovered {clock.ElapsedMilliseconds} ms after the restart");
        Assert.That(recovered.Status, Is.EqualTo(HttpStatusCode.OK), recovered.Raw);
        Assert.That((await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(broker.Audit.Events.Count(e => e.Type == "exchange" && e.Outcome == "issued"), Is.EqualTo(2), "nothing was issued during the outage");
    }
}

/// <summary>A broker on a three-master Redis Cluster: exchange, replay, introspection, revocation and blocks.</summary>
[TestFixture]
public sealed class RedisClusterBrokerTests
{
    private const string Payments = "https://deploy.internal/payments";

    [Test]
    public async Task OnAThreeMasterCluster_EveryStateFeatureWorks()
    {
        var api = StateApi.Create();
        await using var cluster = await RedisCluster.StartAsync();
        var settings = api.Settings();
        foreach (var (k, v) in RedisSettings.For(cluster.Nodes[0].EndPoint))
        {
            settings[k] = v;
        }

        await using var broker = await BrokerHarness.StartAsync(settings);
        var tokens = new List<string>();
        for (var i = 0; i < 8; i++)
        {
            var jobToken = broker.GitHubToken();
            var issued = await broker.ExchangeAsync(jobToken, Payments);
            Assert.That(issued.Status, Is.EqualTo(HttpStatusCode.OK), issued.Raw);
            Assert.That((await broker.ExchangeAsync(jobToken, Payments)).ErrorId, Is.EqualTo("TB1118"));
            tokens.Add(issued.AccessToken!);
        }

        foreach (var token in tokens)
        {
            Assert.That((await api.IntrospectAsync(broker, token)).Body["active"]!.GetValue<bool>(), Is.True);
        }

        await StateApi.RevokeAsync(broker, tokens[0]);
        Assert.That((await api.IntrospectAsync(broker, tokens[0])).Raw, Is.EqualTo("{\"active\":false}"));

        var create = await api.AdminAsync(broker, HttpMethod.Post, "/admin/blocks", """{"owner_id":"5001"}""");
        Assert.That(create.Status, Is.EqualTo(HttpStatusCode.Created), create.Raw);
        Assert.That((await broker.ExchangeAsync(broker.GitHubToken(), Payments)).ErrorId, Is.EqualTo("TB1206"));
        Assert.That((await api.IntrospectAsync(broker, tokens[1])).Raw, Is.EqualTo("{\"active\":false}"));
    }
}
