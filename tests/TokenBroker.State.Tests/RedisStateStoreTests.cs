using System.Globalization;
using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using TokenBroker.State.Redis;
using TokenBroker.Testing;

namespace TokenBroker.State.Tests;

/// <summary>Connects a store to real Redis nodes with its own key prefix, so tests never see each other's keys.</summary>
internal static class RedisStores
{
    public static Task<RedisStateStore> ConnectAsync(IEnumerable<string> endpoints, Action<RedisStateOptions>? tweak = null)
    {
        // The contract is about behaviour, not latency: a 2 s budget keeps a loaded CI machine from failing it.
        // The budget itself is tested with its default in RedisFailureTests.
        var options = new RedisStateOptions
        {
            Endpoints = [.. endpoints],
            KeyPrefix = "t" + Guid.NewGuid().ToString("N")[..12] + ":",
            OperationTimeout = TimeSpan.FromSeconds(2),
        };
        tweak?.Invoke(options);
        return RedisStateStore.ConnectAsync(options, TimeProvider.System, NullLogger.Instance);
    }
}

[TestFixture]
public sealed class RedisStateStoreContractTests : StateStoreContract
{
    private RedisServer _redis = null!;

    [OneTimeSetUp]
    public async Task StartRedis() => _redis = await RedisServer.StartAsync();

    [OneTimeTearDown]
    public async Task StopRedis() => await _redis.DisposeAsync();

    protected override async Task<IStateStore> CreateStoreAsync() => await RedisStores.ConnectAsync([_redis.EndPoint]);
}

/// <summary>The same contract on a three-master Redis Cluster: every operation must stay within one hash slot.</summary>
[TestFixture]
public sealed class RedisClusterStateStoreContractTests : StateStoreContract
{
    private RedisCluster _cluster = null!;

    [OneTimeSetUp]
    public async Task StartCluster() => _cluster = await RedisCluster.StartAsync();

    [OneTimeTearDown]
    public async Task StopCluster() => await _cluster.DisposeAsync();

    protected override async Task<IStateStore> CreateStoreAsync() => await RedisStores.ConnectAsync([_cluster.Nodes[0].EndPoint]);

    [Test]
    public async Task TheReplayMarkAndTheRecord_MapToOneSlot_AndRecordsSpreadOverEveryMaster()
    {
        var store = (RedisStateStore)Store;
        for (var i = 0; i < 24; i++)
        {
            var key = ReplayKey("slot" + i);
            var record = Record(key);
            Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), record, CancellationToken.None), Is.True);
            if (i < 8)
            {
                var replaySlot = (await _cluster.Nodes[0].CliAsync("cluster", "keyslot", store.ReplayKey(key))).Trim();
                var recordSlot = (await _cluster.Nodes[0].CliAsync("cluster", "keyslot", store.RecordKey(record.Jti))).Trim();
                Assert.That(recordSlot, Is.EqualTo(replaySlot));
            }
        }

        var masters = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in _cluster.Nodes)
        {
            // Each master answers SCAN for its own slots only.
            if ((await node.CliAsync("--scan", "--pattern", "*:t:*")).Contains(":t:", StringComparison.Ordinal))
            {
                masters.Add(node.EndPoint);
            }
        }

        Assert.That(masters, Has.Count.EqualTo(3), "24 exchanges land on all three masters (they miss one with a chance of about 1 in 5,000)");
    }
}

[TestFixture]
public sealed class RedisFailureTests
{
    private RedisServer _redis = null!;

    [SetUp]
    public async Task StartRedis() => _redis = await RedisServer.StartAsync();

    [TearDown]
    public async Task StopRedis() => await _redis.DisposeAsync();

    [Test]
    public async Task WhenRedisIsKilled_OperationsFailClosedQuickly_AndRecoverWhenItReturns()
    {
        using var store = await RedisStores.ConnectAsync([_redis.EndPoint], o => o.OperationTimeout = TimeSpan.FromMilliseconds(250));
        var key = StateStoreContract.ReplayKey("kill");
        Assert.That(await store.PingAsync(CancellationToken.None), Is.True);

        await _redis.StopAsync();
        var watch = Stopwatch.StartNew();
        Assert.That(async () => await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Throws.TypeOf<StateUnavailableException>());
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(1.5)), "the failure is reported at once, not after a long hang");

        await _redis.RestartAsync();
        var recovered = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Is.True);
                break;
            }
            catch (StateUnavailableException) when (recovered.Elapsed < TimeSpan.FromSeconds(15))
            {
                await Task.Delay(100);
            }
        }

        TestContext.Out.WriteLine($"recovered {recovered.ElapsedMilliseconds} ms after the restart");
    }

    [Test]
    public async Task WhenRedisAnswersSlowerThanTheBudget_TheOperationFailsClosedAtTheBudget()
    {
        using var store = await RedisStores.ConnectAsync([_redis.EndPoint], o => o.OperationTimeout = TimeSpan.FromMilliseconds(250));
        Assert.That(await store.PingAsync(CancellationToken.None), Is.True);
        var key = StateStoreContract.ReplayKey("slow");

        await _redis.CliAsync("client", "pause", "1500", "ALL");
        var watch = Stopwatch.StartNew();
        Assert.That(async () => await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None),
            Throws.TypeOf<StateUnavailableException>().With.Message.Contains("250 ms"));
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromMilliseconds(1400)), "cut off by the 250 ms budget, not by the end of the 1.5 s pause");
    }

    [Test]
    public async Task AfterRepeatedFailures_TheCircuitOpens_AndRefusesWithoutWaiting()
    {
        using var store = await RedisStores.ConnectAsync([_redis.EndPoint], o =>
        {
            o.OperationTimeout = TimeSpan.FromMilliseconds(250);
            o.BreakDuration = TimeSpan.FromSeconds(5);
        });
        await _redis.CliAsync("client", "pause", "3000", "ALL");
        for (var i = 0; i < 4; i++)
        {
            Assert.That(async () => await store.PingAsync(CancellationToken.None), Throws.TypeOf<StateUnavailableException>());
        }

        var watch = Stopwatch.StartNew();
        Assert.That(async () => await store.PingAsync(CancellationToken.None), Throws.TypeOf<StateUnavailableException>().With.Message.Contains("circuit open"));
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromMilliseconds(200)), "refused without spending the 250 ms budget");
    }
}

/// <summary>Capacity planning: Redis memory per exchange, measured on a real server and reported in docs/operations.md.</summary>
[TestFixture]
public sealed class RedisMemoryTests
{
    [Test]
    public async Task OneExchange_CostsLessThan800BytesOfRedisMemory()
    {
        await using var redis = await RedisServer.StartAsync();
        // A measurement, not a latency test: a generous budget, and batches of 100 so a loaded machine cannot time out.
        using var store = await RedisStores.ConnectAsync([redis.EndPoint], o =>
        {
            o.KeyPrefix = "tb:";
            o.OperationTimeout = TimeSpan.FromSeconds(5);
        });
        const int exchanges = 2000;
        var before = UsedMemory(await redis.CliAsync("info", "memory"));

        for (var batch = 0; batch < exchanges; batch += 100)
        {
            await Task.WhenAll(Enumerable.Range(batch, 100).Select(async i =>
            {
                var key = StateStoreContract.ReplayKey("memory" + i);
                Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(30), StateStoreContract.Record(key), CancellationToken.None), Is.True);
            }));
        }

        var after = UsedMemory(await redis.CliAsync("info", "memory"));
        var perExchange = (after - before) / (double)exchanges;
        var sampleKey = StateStoreContract.ReplayKey("sample");
        var sample = StateStoreContract.Record(sampleKey);
        await store.TryConsumeAsync(sampleKey, DateTimeOffset.UtcNow.AddMinutes(30), sample, CancellationToken.None);
        var replayBytes = (await redis.CliAsync("memory", "usage", store.ReplayKey(sampleKey))).Trim();
        var recordBytes = (await redis.CliAsync("memory", "usage", store.RecordKey(sample.Jti))).Trim();
        TestContext.Out.WriteLine($"used_memory delta per exchange: {perExchange:F0} bytes; MEMORY USAGE replay key {replayBytes} bytes, record {recordBytes} bytes");

        Assert.That(perExchange, Is.GreaterThan(100).And.LessThan(800));
    }

    private static long UsedMemory(string info) =>
        long.Parse(info.Split('\n').First(l => l.StartsWith("used_memory:", StringComparison.Ordinal))["used_memory:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>How the exchange's write and the issued-token record look in Redis, and what a failed half of the write leaves.</summary>
[TestFixture]
public sealed class RedisRecordFormatTests
{
    private RedisServer _redis = null!;

    [OneTimeSetUp]
    public async Task StartRedis() => _redis = await RedisServer.StartAsync();

    [OneTimeTearDown]
    public async Task StopRedis() => await _redis.DisposeAsync();

    [Test]
    public async Task AHashRecordWrittenByAnEarlierBuild_IsStillReadAndRevoked()
    {
        using var store = await RedisStores.ConnectAsync([_redis.EndPoint]);
        var record = StateStoreContract.Record(StateStoreContract.ReplayKey("old-format"));
        var key = store.RecordKey(record.Jti);
        await _redis.CliAsync(
            "hset", key, "e", record.ExpiresAt.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture), "i", record.IssuedAt.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture),
            "s", record.Subject, "u", record.Rule, "p", record.Provider, "ri", record.RepositoryId!, "oi", record.OwnerId!, "rn", record.RunId!);
        await _redis.CliAsync("pexpire", key, "600000");

        Assert.That(await store.GetIssuedAsync(record.Jti, CancellationToken.None), Is.EqualTo(record));

        var revokedAt = DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        Assert.That(await store.RevokeAsync(record.Jti, revokedAt, CancellationToken.None), Is.True);
        Assert.That((await store.GetIssuedAsync(record.Jti, CancellationToken.None))!.RevokedAt, Is.EqualTo(revokedAt));
        Assert.That((await _redis.CliAsync("hget", key, "rv")).Trim(), Is.EqualTo(revokedAt.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture)));
    }

    [Test]
    public async Task TheRecordIsJson_AndTheRevocationMarkExpiresWithIt()
    {
        using var store = await RedisStores.ConnectAsync([_redis.EndPoint]);
        var replayKey = StateStoreContract.ReplayKey("format");
        var record = StateStoreContract.Record(replayKey, TimeSpan.FromMinutes(3));
        Assert.That(await store.TryConsumeAsync(replayKey, DateTimeOffset.UtcNow.AddMinutes(10), record, CancellationToken.None), Is.True);

        var json = (await _redis.CliAsync("get", store.RecordKey(record.Jti))).Trim();
        Assert.That(json, Does.StartWith("{\"e\":" + record.ExpiresAt.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture) + ",\"i\":"));
        Assert.That(json, Does.Contain("\"s\":\"github:octo-org/payments:production\""));
        Assert.That((await _redis.CliAsync("get", store.ReplayKey(replayKey))).Trim(), Is.EqualTo(record.Jti));

        Assert.That(await store.RevokeAsync(record.Jti, DateTimeOffset.UtcNow, CancellationToken.None), Is.True);
        var recordTtl = long.Parse(await _redis.CliAsync("pttl", store.RecordKey(record.Jti)), CultureInfo.InvariantCulture);
        var markTtl = long.Parse(await _redis.CliAsync("pttl", store.RevokedKey(record.Jti)), CultureInfo.InvariantCulture);
        Assert.That(recordTtl, Is.InRange(170_000, 180_000));
        Assert.That(markTtl, Is.InRange(recordTtl - 2_000, recordTtl));
    }

    [Test]
    public async Task ARecordThatIsNotOne_ReadsAsUnknown()
    {
        using var store = await RedisStores.ConnectAsync([_redis.EndPoint]);
        var record = StateStoreContract.Record(StateStoreContract.ReplayKey("garbage"));
        await _redis.CliAsync("set", store.RecordKey(record.Jti), "{\"e\":1,\"i\":", "px", "60000");
        var other = StateStoreContract.Record(StateStoreContract.ReplayKey("garbage2"));
        await _redis.CliAsync("set", store.RecordKey(other.Jti), "{\"e\":1,\"i\":1}", "px", "60000");

        Assert.That(await store.GetIssuedAsync(record.Jti, CancellationToken.None), Is.Null, "truncated JSON");
        Assert.That(await store.GetIssuedAsync(other.Jti, CancellationToken.None), Is.Null, "required members missing");
    }

    [Test]
    public async Task WhenTheRecordCannotBeWritten_TheExchangeFailsClosed_AndTheJobTokenStaysUsable()
    {
        using var store = await RedisStores.ConnectAsync([_redis.EndPoint]);
        var replayKey = StateStoreContract.ReplayKey("half-write");
        try
        {
            // The default user may write replay marks but no record: the second half of the write is refused.
            await _redis.CliAsync("acl", "setuser", "default", "resetkeys", "~*:r:*");
            Assert.That(
                async () => await store.TryConsumeAsync(replayKey, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(replayKey), CancellationToken.None),
                Throws.InstanceOf<StateUnavailableException>());
        }
        finally
        {
            await _redis.CliAsync("acl", "setuser", "default", "allkeys");
        }

        // The mark that landed without its record was released: the job can retry with the same token.
        var retry = StateStoreContract.Record(replayKey);
        Assert.That(await store.TryConsumeAsync(replayKey, DateTimeOffset.UtcNow.AddMinutes(5), retry, CancellationToken.None), Is.True);
        Assert.That(await store.GetIssuedAsync(retry.Jti, CancellationToken.None), Is.Not.Null);
    }

    [Test]
    public async Task TheLoserOfAReplay_LeavesNoRecordBehind()
    {
        using var store = await RedisStores.ConnectAsync([_redis.EndPoint]);
        var replayKey = StateStoreContract.ReplayKey("loser");
        var winner = StateStoreContract.Record(replayKey);
        var losers = Enumerable.Range(0, 20).Select(_ => StateStoreContract.Record(replayKey)).ToArray();
        Assert.That(await store.TryConsumeAsync(replayKey, DateTimeOffset.UtcNow.AddMinutes(5), winner, CancellationToken.None), Is.True);

        var results = await Task.WhenAll(losers.Select(l => store.TryConsumeAsync(replayKey, DateTimeOffset.UtcNow.AddMinutes(5), l, CancellationToken.None).AsTask()));

        Assert.That(results, Is.All.False);
        Assert.That(await store.PingAsync(CancellationToken.None), Is.True); // after every removal on the connection
        foreach (var loser in losers)
        {
            Assert.That((await _redis.CliAsync("exists", store.RecordKey(loser.Jti))).Trim(), Is.EqualTo("0"));
        }

        Assert.That((await _redis.CliAsync("get", store.ReplayKey(replayKey))).Trim(), Is.EqualTo(winner.Jti), "the mark still names the winner");
    }
}
