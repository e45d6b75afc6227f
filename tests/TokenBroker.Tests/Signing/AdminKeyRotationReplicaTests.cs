using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using TokenBroker.Demo;
using TokenBroker.Testing;
using TokenBroker.Tests.Exchange;
using TokenBroker.Tests.Infrastructure;
using TokenBroker.Tests.State;

namespace TokenBroker.Tests.Signing;

/// <summary>
/// Two broker replicas sharing one real redis-server, one clock and one configuration (an active key and two
/// standby keys): an admin rotation on one replica is shared state, so both publish the same JWKS and sign with the
/// same key at every instant.
/// </summary>
[TestFixture]
public sealed class AdminKeyRotationReplicaTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly StateApi _api = StateApi.Create();
    private RedisServer _redis = null!;
    private FakeCiIssuer _issuer = null!;
    private string _dir = null!;
    private ManualClock _clock = null!;
    private BrokerHarness _a = null!;
    private BrokerHarness _b = null!;

    [OneTimeSetUp]
    public async Task StartShared()
    {
        _redis = await RedisServer.StartAsync();
        _issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        _dir = Directory.CreateTempSubdirectory("tb-replica-rotation-").FullName;
    }

    [OneTimeTearDown]
    public async Task StopShared()
    {
        await _issuer.DisposeAsync();
        await _redis.DisposeAsync();
        Directory.Delete(_dir, true);
    }

    [SetUp]
    public async Task StartReplicas()
    {
        _clock = new ManualClock(T0);
        var settings = _api.Settings();
        foreach (var (k, v) in RedisSettings.For(_redis.EndPoint))
        {
            settings[k] = v;
        }

        settings["TokenBroker:Signing:AnnouncementLeadTime"] = "01:00:00";
        string[] kids = ["old", "spare-1", "spare-2"];
        for (var i = 0; i < kids.Length; i++)
        {
            var path = Path.Combine(_dir, kids[i] + ".pem");
            if (!File.Exists(path))
            {
                using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                File.WriteAllText(path, key.ExportPkcs8PrivateKeyPem());
            }

            settings[$"TokenBroker:Signing:Keys:{i}:Path"] = path;
            settings[$"TokenBroker:Signing:Keys:{i}:KeyId"] = kids[i];
            if (i > 0)
            {
                settings[$"TokenBroker:Signing:Keys:{i}:Standby"] = "true";
            }
        }

        _a = await BrokerHarness.StartAsync(settings, _issuer, _clock);
        _b = await BrokerHarness.StartAsync(new Dictionary<string, string?>(settings) { ["TokenBroker:Issuer"] = _a.BrokerIssuer }, _issuer, _clock);
    }

    [TearDown]
    public async Task StopReplicas()
    {
        await _b.DisposeAsync();
        await _a.DisposeAsync();
    }

    private static async Task<string> JwksAsync(BrokerHarness broker) =>
        await broker.Client.GetStringAsync(new Uri("/.well-known/jwks.json", UriKind.Relative));

    private static string[] Kids(string jwks) =>
        JsonNode.Parse(jwks)!["keys"]!.AsArray().Select(k => k!["kid"]!.GetValue<string>()).Order(StringComparer.Ordinal).ToArray();

    private async Task<string> IssuedKidAsync(BrokerHarness broker)
    {
        var response = await broker.ExchangeAsync(_a.GitHubToken(now: _clock.GetUtcNow()), "https://deploy.internal/payments");
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        return JwtParts.Header(response.AccessToken!)["kid"]!.GetValue<string>();
    }

    private async Task AssertReplicasAgreeAsync(string signs, string[] published, string when)
    {
        var (a, b) = (await JwksAsync(_a), await JwksAsync(_b));
        Assert.That(a, Is.EqualTo(b), $"{when}: both replicas publish the same JWKS");
        Assert.That(Kids(a), Is.EqualTo(published), when);
        Assert.That(await IssuedKidAsync(_a), Is.EqualTo(signs), $"{when}: replica A signs with");
        Assert.That(await IssuedKidAsync(_b), Is.EqualTo(signs), $"{when}: replica B signs with");
    }

    [Test]
    public async Task ARotationOnReplicaA_IsPublishedByReplicaBWithinOneSecond_AndBothSwitchKeysAtTheSameInstant()
    {
        await AssertReplicasAgreeAsync("old", ["old"], "before the rotation");

        var rotate = await _api.AdminAsync(_a, HttpMethod.Post, "/admin/keys/rotate", "{}");
        Assert.That(rotate.Status, Is.EqualTo(HttpStatusCode.Created), rotate.Raw);
        var watch = Stopwatch.StartNew();
        while (!Kids(await JwksAsync(_b)).Contains("spare-1") && watch.Elapsed < TimeSpan.FromSeconds(2))
        {
            await Task.Delay(20);
        }

        TestContext.Out.WriteLine($"replica B published spare-1 after {watch.ElapsedMilliseconds} ms");
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(1)), "through the store's notification, far inside the lead time");
        await AssertReplicasAgreeAsync("old", ["old", "spare-1"], "announced");

        _clock.Advance(TimeSpan.FromHours(1));
        await AssertReplicasAgreeAsync("spare-1", ["old", "spare-1"], "at activation");

        var listB = await _api.AdminAsync(_b, HttpMethod.Get, "/admin/keys");
        Assert.That(listB.Body["rotations"]!.AsArray().Select(r => r!["kid"]!.GetValue<string>()), Is.EqualTo(new[] { "spare-1" }), "replica B lists the rotation made on A");
        Assert.That(listB.Body["rotations"]![0]!["requested_by"]!.GetValue<string>(), Is.EqualTo("ops-admin"));

        _clock.Advance(TimeSpan.FromMinutes(90) + TimeSpan.FromSeconds(30));
        await AssertReplicasAgreeAsync("spare-1", ["spare-1"], "after retention");
    }

    [Test]
    public async Task TwoAdminsRotatingOnBothReplicasAtOnce_ResultInExactlyOneRotation()
    {
        var results = await Task.WhenAll(
            Task.Run(() => _api.AdminAsync(_a, HttpMethod.Post, "/admin/keys/rotate", "{}")),
            Task.Run(() => _api.AdminAsync(_b, HttpMethod.Post, "/admin/keys/rotate", "{}")));

        Assert.That(results.Count(r => r.Status == HttpStatusCode.Created), Is.EqualTo(1), string.Join("\n", results.Select(r => r.Raw)));
        Assert.That(results.Single(r => r.Status != HttpStatusCode.Created).ErrorId, Is.EqualTo("TB1409"), "the loser sees the winner's rotation pending");
        var list = await _api.AdminAsync(_a, HttpMethod.Get, "/admin/keys");
        Assert.That(list.Body["rotations"]!.AsArray(), Has.Count.EqualTo(1));
        Assert.That(list.Body["rotations_version"]!.GetValue<long>(), Is.EqualTo(1));
    }

    [Test]
    public async Task ARotationWrittenWithoutANotification_IsPickedUpByThePeriodicResync()
    {
        // As if the pub/sub message were lost: a record in the broker's own format, written straight into Redis.
        var prefix = _a.App.Services.GetRequiredService<TokenBroker.Configuration.ResolvedSettings>().State.Redis.KeyPrefix;
        var record = $$"""{"key_id":"spare-2","algorithm":"ES256","activate_at":"{{T0.AddHours(1):O}}","requested_at":"{{T0:O}}","requested_by":"redis-cli"}""";
        await _redis.CliAsync("hset", prefix + "keyrotations", "k:spare-2", record);
        await _redis.CliAsync("hincrby", prefix + "keyrotations", "#v", "1");

        var watch = Stopwatch.StartNew();
        while (!Kids(await JwksAsync(_b)).Contains("spare-2") && watch.Elapsed < TimeSpan.FromSeconds(3))
        {
            await Task.Delay(50);
        }

        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(2.5)), "State:BlockSyncInterval is 1 s");
        await AssertReplicasAgreeAsync("old", ["old", "spare-2"], "announced by re-reading");
        _clock.Advance(TimeSpan.FromHours(1));
        await AssertReplicasAgreeAsync("spare-2", ["old", "spare-2"], "at activation");
    }
}
