using System.Diagnostics;
using TokenBroker.State.Redis;
using TokenBroker.Testing;

namespace TokenBroker.State.Tests;

/// <summary>The store contract through Sentinel discovery: the store is given only the Sentinel and the service name.</summary>
[TestFixture]
public sealed class RedisSentinelStateStoreContractTests : StateStoreContract
{
    private RedisSentinelGroup _group = null!;

    [OneTimeSetUp]
    public async Task StartGroup() => _group = await RedisSentinelGroup.StartAsync();

    [OneTimeTearDown]
    public async Task StopGroup() => await _group.DisposeAsync();

    protected override async Task<IStateStore> CreateStoreAsync() => await SentinelStores.ConnectAsync(_group);

    [Test]
    public async Task TheStoreWritesToTheMasterTheSentinelNames()
    {
        var store = (RedisStateStore)Store;
        var key = ReplayKey("where");

        Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), Record(key), CancellationToken.None), Is.True);

        Assert.That((await _group.Master.CliAsync("exists", store.ReplayKey(key))).Trim(), Is.EqualTo("1"));
        Assert.That((await _group.Master.CliAsync("role")).Split('\n')[0].Trim(), Is.EqualTo("master"));
    }
}

internal static class SentinelStores
{
    public static Task<RedisStateStore> ConnectAsync(RedisSentinelGroup group, Action<RedisStateOptions>? tweak = null) =>
        RedisStores.ConnectAsync([], o =>
        {
            o.Sentinels = [group.Sentinel.EndPoint];
            o.ServiceName = RedisSentinelGroup.ServiceName;
            o.MasterCheckInterval = TimeSpan.FromMilliseconds(500);
            tweak?.Invoke(o);
        });
}

[TestFixture]
public sealed class RedisSentinelFailoverTests
{
    [Test]
    public async Task WhenTheMasterIsKilled_TheStoreFailsClosed_ThenFollowsThePromotedReplicaByItself()
    {
        await using var group = await RedisSentinelGroup.StartAsync();
        var prefix = "t" + Guid.NewGuid().ToString("N")[..12] + ":";
        using var store = await SentinelStores.ConnectAsync(group, o =>
        {
            o.KeyPrefix = prefix;
            o.OperationTimeout = TimeSpan.FromMilliseconds(500);
        });

        // Another broker replica on the same group: its block changes must reach this store after the failover.
        using var other = await SentinelStores.ConnectAsync(group, o => o.KeyPrefix = prefix);

        var before = StateStoreContract.ReplayKey("before");
        var beforeRecord = StateStoreContract.Record(before);
        Assert.That(await store.TryConsumeAsync(before, DateTimeOffset.UtcNow.AddMinutes(5), beforeRecord, CancellationToken.None), Is.True);
        await store.AddBlockAsync(NewBlock("before"), CancellationToken.None);
        await group.WaitReplicatedAsync(store.ReplayKey(before));
        await group.WaitReplicatedAsync(store.RecordKey(beforeRecord.Jti));

        await group.Master.StopAsync();
        var killed = Stopwatch.StartNew();
        Assert.That(async () => await store.PingAsync(CancellationToken.None), Throws.TypeOf<StateUnavailableException>(), "fails closed while the master is gone");
        var during = StateStoreContract.ReplayKey("during");
        Assert.That(async () => await store.TryConsumeAsync(during, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(during), CancellationToken.None),
            Throws.TypeOf<StateUnavailableException>());
        Assert.That(killed.Elapsed, Is.LessThan(TimeSpan.FromSeconds(2)), "the failures are reported at once, not after a long hang");

        var after = StateStoreContract.ReplayKey("after");
        while (true)
        {
            try
            {
                Assert.That(await store.TryConsumeAsync(after, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(after), CancellationToken.None), Is.True);
                break;
            }
            catch (StateUnavailableException) when (killed.Elapsed < TimeSpan.FromSeconds(15))
            {
                await Task.Delay(100);
            }
        }

        TestContext.Out.WriteLine($"recovered {killed.ElapsedMilliseconds} ms after the master was killed");
        Assert.That(killed.Elapsed, Is.LessThan(TimeSpan.FromSeconds(15)));
        Assert.That((await group.Replica.CliAsync("role")).Split('\n')[0].Trim(), Is.EqualTo("master"), "the Sentinel promoted the replica");
        Assert.That((await group.Replica.CliAsync("exists", store.ReplayKey(after))).Trim(), Is.EqualTo("1"), "the write went to the promoted replica");

        // Replicated before the failover, so still consumed: the job token cannot be exchanged twice.
        Assert.That(await store.TryConsumeAsync(before, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(before), CancellationToken.None), Is.False);
        Assert.That(await store.GetIssuedAsync(beforeRecord.Jti, CancellationToken.None), Is.EqualTo(beforeRecord));
        Assert.That((await store.GetBlocksAsync(CancellationToken.None)).Blocks.Select(b => b.Id), Does.Contain("blk_before"));

        // Block notifications from another replica reach this store through the new master.
        var notified = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        store.BlocksChanged += () => notified.TrySetResult();
        await RetryAsync(() => other.AddBlockAsync(NewBlock("after"), CancellationToken.None).AsTask(), killed);
        Assert.That(await Task.WhenAny(notified.Task, Task.Delay(TimeSpan.FromSeconds(2))), Is.SameAs(notified.Task), "notified within 2 s");
        Assert.That(await store.PingAsync(CancellationToken.None), Is.True);
    }

    [Test]
    public async Task WhenThePromotedReplicaMissedTheLastBlockChange_ItsBlockVersionIsRaisedAboveEveryVersionSeen()
    {
        await using var group = await RedisSentinelGroup.StartAsync(writableReplica: true);
        var prefix = "t" + Guid.NewGuid().ToString("N")[..12] + ":";
        using var store = await SentinelStores.ConnectAsync(group, o => o.KeyPrefix = prefix);
        await store.AddBlockAsync(NewBlock("kept"), CancellationToken.None);
        var seen = await store.AddBlockAsync(NewBlock("lost"), CancellationToken.None);
        await RedisSentinelGroup.WaitAsync(async () => (await group.Replica.CliAsync("hget", prefix + "blocks", "#v")).Trim() == "2", "the blocks did not reach the replica");

        // As if the last change had not been replicated when the master died: the replica is one version behind.
        await group.Replica.CliAsync("hdel", prefix + "blocks", "b:blk_lost");
        await group.Replica.CliAsync("hset", prefix + "blocks", "#v", "1");
        var notified = 0;
        store.BlocksChanged += () => Interlocked.Increment(ref notified);

        await group.Master.StopAsync();
        var killed = Stopwatch.StartNew();
        BlockSet? blocks = null;
        while (killed.Elapsed < TimeSpan.FromSeconds(15))
        {
            try
            {
                blocks = await store.GetBlocksAsync(CancellationToken.None);
                if (blocks.Version > seen)
                {
                    break;
                }
            }
            catch (StateUnavailableException)
            {
            }

            await Task.Delay(100);
        }

        // Without the raise the new master would answer version 1, which a versioned cache holding version 2 ignores.
        Assert.That(blocks?.Version, Is.GreaterThan(seen), "a cache that saw version 2 takes the new master's list");
        Assert.That(blocks!.Blocks.Select(b => b.Id), Is.EqualTo(new[] { "blk_kept" }), "the list is the new master's: the lost change is gone");
        Assert.That(Volatile.Read(ref notified), Is.GreaterThan(0), "listeners were told to re-read");
    }

    [Test]
    public async Task WhenTheSentinelNamesANodeThatIsAReplica_TheStoreFailsClosed_AndWritesNothingToIt()
    {
        await using var group = await RedisSentinelGroup.StartAsync(monitorReplica: true);
        using var store = await SentinelStores.ConnectAsync(group);
        Assert.That((await group.SentinelAsync("get-master-addr-by-name", RedisSentinelGroup.ServiceName)).Contains(group.Replica.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal),
            "the Sentinel names the replica");
        var key = StateStoreContract.ReplayKey("replica");

        Assert.That(async () => await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None),
            Throws.TypeOf<StateUnavailableException>().With.Message.Contains("no checked master"));
        Assert.That(async () => await store.PingAsync(CancellationToken.None), Throws.TypeOf<StateUnavailableException>());
        Assert.That(async () => await store.GetBlocksAsync(CancellationToken.None), Throws.TypeOf<StateUnavailableException>(), "no reads from a replica either");
        Assert.That((await group.Replica.CliAsync("dbsize")).Trim(), Is.EqualTo("0"));
    }

    [Test]
    public async Task WithPasswords_TheStoreAuthenticatesToTheSentinelsAndToTheMaster_AndAWrongSentinelPasswordFailsClosed()
    {
        await using var group = await RedisSentinelGroup.StartAsync(dataPassword: "data-secret", sentinelPassword: "sentinel-secret");
        using (var store = await SentinelStores.ConnectAsync(group, o =>
        {
            o.Password = "data-secret";
            o.SentinelPassword = "sentinel-secret";
        }))
        {
            var key = StateStoreContract.ReplayKey("auth");
            Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Is.True);
            Assert.That((await group.Master.CliAsync("exists", store.ReplayKey(key))).Trim(), Is.EqualTo("1"));
        }

        using var wrong = await SentinelStores.ConnectAsync(group, o =>
        {
            o.Password = "data-secret";
            o.SentinelPassword = "not-the-password";
            o.ConnectTimeout = TimeSpan.FromMilliseconds(500);
        });
        Assert.That(async () => await wrong.PingAsync(CancellationToken.None), Throws.TypeOf<StateUnavailableException>().With.Message.Contains("no checked master"));
    }

    [Test]
    public async Task WhenNoSentinelAnswers_TheStoreStartsAndFailsClosed()
    {
        RedisServer.RequireRedis();
        using var store = await RedisStores.ConnectAsync([], o =>
        {
            o.Sentinels = ["127.0.0.1:" + RedisServer.FreePort()];
            o.ServiceName = RedisSentinelGroup.ServiceName;
            o.ConnectTimeout = TimeSpan.FromMilliseconds(200);
        });

        Assert.That(async () => await store.PingAsync(CancellationToken.None), Throws.TypeOf<StateUnavailableException>().With.Message.Contains("no checked master"));
    }

    private static Block NewBlock(string id) =>
        new() { Id = "blk_" + id, Selector = new BlockSelector { RunId = "1" }, CreatedAt = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()), CreatedBy = "t" };

    private static async Task RetryAsync(Func<Task> action, Stopwatch since)
    {
        while (true)
        {
            try
            {
                await action();
                return;
            }
            catch (StateUnavailableException) when (since.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(100);
            }
        }
    }
}
