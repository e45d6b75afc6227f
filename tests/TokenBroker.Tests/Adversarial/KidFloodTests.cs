using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Adversarial;

/// <summary>
/// A flood of tokens with random key ids must not turn the broker into an amplifier against the CI provider: every
/// one is refused, and the provider's JWKS is fetched at most once per <c>UnknownKeyRefreshInterval</c>.
/// </summary>
[TestFixture]
public sealed class KidFloodTests
{
    /// <summary>The default <c>UnknownKeyRefreshInterval</c>.</summary>
    private static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);

    private readonly SteppableClock _clock = new();
    private BrokerHarness _broker = null!;
    private Attacker _attacker = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _broker = await BrokerHarness.StartAsync(time: _clock);
        _attacker = new Attacker();
        await AdversarialSuiteTests.WarmUpAsync(_broker);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        _attacker.Dispose();
        await _broker.DisposeAsync();
    }

    private async Task<ExchangeResponse[]> FloodAsync(int count)
    {
        var payload = JwtParts.Payload(_broker.GitHubToken());
        var tokens = Enumerable.Range(0, count).Select(_ =>
        {
            var body = payload.DeepClone().AsObject();
            body["jti"] = Guid.NewGuid().ToString();
            var kid = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
            return _attacker.Sign(new JsonObject { ["typ"] = "JWT", ["alg"] = "RS256", ["kid"] = kid }, body);
        }).ToArray();
        return await Task.WhenAll(tokens.Select(t => _broker.ExchangeAsync(t, AttackKit.DeployAudience)));
    }

    private void AssertAllRefusedAsUnknownKeys(ExchangeResponse[] responses)
    {
        foreach (var response in responses)
        {
            Assert.That(response.Status, Is.EqualTo(HttpStatusCode.BadRequest), response.Raw);
            Assert.That(response.Error, Is.EqualTo("invalid_request"));
            Assert.That(response.ErrorId, Is.EqualTo("TB1109"), response.Raw);
            Assert.That(response.Body.ContainsKey("access_token"), Is.False);
            var audit = _broker.AuditFor(response);
            Assert.That(audit?.Outcome, Is.EqualTo("refused"));
            Assert.That(audit!.IssuedJti, Is.Null);
        }
    }

    [Test]
    public async Task FiftyRandomKids_AreAllRefused_AndFetchTheJwksAtMostOncePerInterval()
    {
        var jwks = _broker.Issuer.JwksHitsFor("github");
        var discovery = _broker.Issuer.DiscoveryHitsFor("github");
        var gitlab = _broker.Issuer.JwksHitsFor("gitlab");
        var started = TimeProvider.System.GetTimestamp();

        var first = await FloodAsync(50);
        var second = await FloodAsync(50);
        var elapsed = TimeProvider.System.GetElapsedTime(started);

        AssertAllRefusedAsUnknownKeys(first);
        AssertAllRefusedAsUnknownKeys(second);
        Assert.That(elapsed, Is.LessThan(Interval), "both floods must fall within one refresh interval for the count to mean anything");
        Assert.That(_broker.Issuer.JwksHitsFor("github") - jwks, Is.LessThanOrEqualTo(1), "100 unknown kids within one interval: at most one JWKS fetch");
        Assert.That(_broker.Issuer.DiscoveryHitsFor("github") - discovery, Is.LessThanOrEqualTo(1));
        var refreshed = first.Concat(second).Count(r => _broker.AuditFor(r)!.Detail!.Contains("(after a refresh)", StringComparison.Ordinal));
        Assert.That(refreshed, Is.LessThanOrEqualTo(1), "only one request of the flood may refresh the keys");
        Assert.That(_broker.Issuer.JwksHitsFor("gitlab"), Is.EqualTo(gitlab), "the other provider is untouched");

        // After the interval, one more refresh is allowed, and again only one.
        // IdentityModel's ConfigurationManager also ignores refresh requests less than a second apart on the real clock
        // (its MinimumRefreshInterval); in production the broker's own interval is far longer than that.
        _clock.Advance(Interval + TimeSpan.FromSeconds(1));
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        var beforeThird = _broker.Issuer.JwksHitsFor("github");
        var third = await FloodAsync(50);

        AssertAllRefusedAsUnknownKeys(third);
        Assert.That(_broker.Issuer.JwksHitsFor("github") - beforeThird, Is.EqualTo(1), "a new interval allows exactly one refresh (so rotated keys are still picked up)");
        Assert.That(third.Count(r => _broker.AuditFor(r)!.Detail!.Contains("(after a refresh)", StringComparison.Ordinal)), Is.EqualTo(1));
    }
}

/// <summary>
/// The system clock, which a test can move forward: both the wall clock and the timestamps that measure intervals.
/// Job tokens minted on the real clock stay valid across a step of a minute.
/// </summary>
internal sealed class SteppableClock : TimeProvider
{
    private long _offsetTicks;

    private TimeSpan Offset => TimeSpan.FromTicks(Volatile.Read(ref _offsetTicks));

    public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + Offset;

    public override long TimestampFrequency => System.TimestampFrequency;

    public override long GetTimestamp() => System.GetTimestamp() + (long)(Offset.TotalSeconds * System.TimestampFrequency);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _offsetTicks, by.Ticks);
}
