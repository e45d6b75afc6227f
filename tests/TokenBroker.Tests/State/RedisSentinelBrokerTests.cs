using System.Diagnostics;
using System.Net;
using TokenBroker.Testing;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.State;

/// <summary>
/// A broker configured with only a Sentinel and a service name, on a real master + replica + Sentinel group: it
/// works, fails closed (503, <c>/readyz</c> 503) while the master is killed and the replica promoted, then recovers.
/// </summary>
[TestFixture]
public sealed class RedisSentinelBrokerTests
{
    private const string Payments = "https://deploy.internal/payments";

    [Test]
    public async Task ThroughASentinelFailover_TheBrokerFailsClosed_ThenRecoversOnThePromotedReplica()
    {
        var api = StateApi.Create();
        await using var group = await RedisSentinelGroup.StartAsync();
        var settings = api.Settings();
        settings["TokenBroker:State:Store"] = "redis";
        settings["TokenBroker:State:Redis:Sentinels:0"] = group.Sentinel.EndPoint;
        settings["TokenBroker:State:Redis:ServiceName"] = RedisSentinelGroup.ServiceName;
        settings["TokenBroker:State:Redis:MasterCheckInterval"] = "00:00:00.500";
        settings["TokenBroker:State:Redis:OperationTimeout"] = "00:00:02";
        settings["TokenBroker:State:Redis:KeyPrefix"] = "t" + Guid.NewGuid().ToString("N")[..12] + ":";

        await using var broker = await BrokerHarness.StartAsync(settings);
        var jobToken = broker.GitHubToken();
        var issued = await broker.ExchangeAsync(jobToken, Payments);
        Assert.That(issued.Status, Is.EqualTo(HttpStatusCode.OK), issued.Raw);
        Assert.That((await broker.ExchangeAsync(jobToken, Payments)).ErrorId, Is.EqualTo("TB1118"));
        Assert.That((await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await group.Master.CliAsync("dbsize")).Trim(), Is.EqualTo("2"), "the replay mark and the record are on the master");

        // Replication is asynchronous: wait until the replica has both keys, as WAIT or min-replicas-to-write would ensure.
        await RedisSentinelGroup.WaitAsync(async () => (await group.Replica.CliAsync("dbsize")).Trim() == "2", "the keys did not reach the replica");

        await group.Master.StopAsync();
        var killed = Stopwatch.StartNew();
        var ready = await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative));
        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), await ready.Content.ReadAsStringAsync());
        Assert.That(await ready.Content.ReadAsStringAsync(), Does.Contain("state:"));
        var refused = await broker.ExchangeAsync(broker.GitHubToken(), Payments);
        Assert.That(refused.ErrorId, Is.EqualTo("TB1302"), refused.Raw);
        Assert.That(refused.AccessToken, Is.Null);

        do
        {
            await Task.Delay(200);
            ready = await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative));
        }
        while (ready.StatusCode != HttpStatusCode.OK && killed.Elapsed < TimeSpan.FromSeconds(15));

        TestContext.Out.WriteLine($"ready again {killed.ElapsedMilliseconds} ms after the master was killed");
        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.OK), await ready.Content.ReadAsStringAsync());
        Assert.That((await group.Replica.CliAsync("role")).Split('\n')[0].Trim(), Is.EqualTo("master"));

        var after = await broker.ExchangeAsync(broker.GitHubToken(), Payments);
        Assert.That(after.Status, Is.EqualTo(HttpStatusCode.OK), after.Raw);
        Assert.That((await group.Replica.CliAsync("dbsize")).Trim(), Is.EqualTo("4"), "the new exchange was written to the promoted replica");
        Assert.That((await broker.ExchangeAsync(jobToken, Payments)).ErrorId, Is.EqualTo("TB1118"), "the replicated replay mark survived the failover");
        Assert.That((await api.IntrospectAsync(broker, issued.AccessToken!)).Body["active"]!.GetValue<bool>(), Is.True);

        var block = await api.AdminAsync(broker, HttpMethod.Post, "/admin/blocks", """{"owner_id":"5001"}""");
        Assert.That(block.Status, Is.EqualTo(HttpStatusCode.Created), block.Raw);
        Assert.That((await broker.ExchangeAsync(broker.GitHubToken(), Payments)).ErrorId, Is.EqualTo("TB1206"));
        Assert.That(broker.Audit.Events.Count(e => e.Type == "exchange" && e.Outcome == "issued"), Is.EqualTo(2), "nothing was issued during the failover");
    }
}
