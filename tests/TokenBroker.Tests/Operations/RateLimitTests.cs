using System.Net;
using System.Text.Json.Nodes;
using TokenBroker.Configuration;
using TokenBroker.RateLimiting;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Operations;

/// <summary>Per-client and per-repository rate limits, against a real broker on loopback.</summary>
[TestFixture]
public sealed class RateLimitTests
{
    private const string PaymentsAudience = "https://deploy.internal/payments";

    private static Dictionary<string, string?> Limits(params (string Key, string Value)[] settings) =>
        settings.ToDictionary(s => "TokenBroker:RateLimits:" + s.Key, s => (string?)s.Value);

    private static async Task<ExchangeResponse> JunkExchangeAsync(BrokerHarness broker, string? forwardedFor = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/token") { Content = new FormUrlEncodedContent(BrokerHarness.ExchangeForm("not-a-jwt", PaymentsAudience)) };
        if (forwardedFor is not null)
        {
            request.Headers.Add("X-Forwarded-For", forwardedFor);
        }

        return await broker.SendAsync(request);
    }

    [Test]
    public async Task Token_BeyondTheClientBurst_Answers429WithRetryAfterTheIdAndAnAuditEvent()
    {
        await using var broker = await BrokerHarness.StartAsync(Limits(("Token:Burst", "3"), ("Token:PerMinute", "1")));

        for (var i = 0; i < 3; i++)
        {
            Assert.That((await JunkExchangeAsync(broker)).ErrorId, Is.EqualTo("TB1102"), "within the burst the request is handled");
        }

        var refused = await JunkExchangeAsync(broker);

        Assert.That(refused.Status, Is.EqualTo(HttpStatusCode.TooManyRequests), refused.Raw);
        Assert.That(refused.ErrorId, Is.EqualTo("TB1501"));
        Assert.That(refused.Error, Is.EqualTo("temporarily_unavailable"));
        Assert.That(refused.Headers.RetryAfter?.Delta?.TotalSeconds, Is.InRange(50, 60), "one permit a minute: about a minute to wait, rounded up");
        Assert.That(refused.Headers.CacheControl?.NoStore, Is.True);
        var audit = broker.AuditFor(refused);
        Assert.That(audit, Is.Not.Null, "the refusal is audited");
        Assert.That(audit!.Type, Is.EqualTo("exchange"));
        Assert.That(audit.Outcome, Is.EqualTo("refused"));
        Assert.That(audit.ErrorId, Is.EqualTo("TB1501"));
        Assert.That(audit.Detail, Does.Contain("RateLimits:Token (burst 3, 1/minute)").And.Contain("127.0.0.1"));
        Assert.That(audit.ClientIp, Is.EqualTo("127.0.0.1"));
    }

    [Test]
    public async Task ClientLimits_AreSeparatePerEndpoint_AndDoNotTouchDiscovery()
    {
        await using var broker = await BrokerHarness.StartAsync(Limits(("Token:Burst", "1"), ("Token:PerMinute", "1"), ("Revoke:Burst", "2"), ("Revoke:PerMinute", "1")));

        await JunkExchangeAsync(broker);
        Assert.That((await JunkExchangeAsync(broker)).ErrorId, Is.EqualTo("TB1501"));

        using var revoke = new FormUrlEncodedContent([new("token", "junk")]);
        var revoked = await broker.Client.PostAsync(new Uri("/revoke", UriKind.Relative), revoke);
        Assert.That(revoked.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the /revoke budget is its own");
        for (var i = 0; i < 5; i++)
        {
            Assert.That((await broker.Client.GetAsync(new Uri("/.well-known/jwks.json", UriKind.Relative))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
    }

    private static IEnumerable<TestCaseData> ConfiguredBursts()
    {
        yield return new TestCaseData(2).SetName("Token_WithBurst2_AdmitsExactly2");
        yield return new TestCaseData(5).SetName("Token_WithBurst5_AdmitsExactly5");
    }

    [TestCaseSource(nameof(ConfiguredBursts))]
    public async Task Token_AdmitsExactlyTheConfiguredBurst(int burst)
    {
        await using var broker = await BrokerHarness.StartAsync(Limits(("Token:Burst", burst.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("Token:PerMinute", "1")));

        var ids = new List<string?>();
        for (var i = 0; i < burst + 2; i++)
        {
            ids.Add((await JunkExchangeAsync(broker)).ErrorId);
        }

        Assert.That(ids.Take(burst), Has.All.EqualTo("TB1102"));
        Assert.That(ids.Skip(burst), Has.All.EqualTo("TB1501"));
    }

    private static IEnumerable<TestCaseData> LimitsOff()
    {
        yield return new TestCaseData(Limits(("Token:Burst", "0"))).SetName("Token_WithBurst0_IsNotLimited");
        yield return new TestCaseData(Limits(("Enabled", "false"), ("Token:Burst", "1"), ("Token:PerMinute", "1"))).SetName("Token_WithRateLimitsDisabled_IsNotLimited");
    }

    [TestCaseSource(nameof(LimitsOff))]
    public async Task Token_WithTheLimitOff_IsNeverRefused(Dictionary<string, string?> settings)
    {
        await using var broker = await BrokerHarness.StartAsync(settings);

        for (var i = 0; i < 20; i++)
        {
            Assert.That((await JunkExchangeAsync(broker)).ErrorId, Is.EqualTo("TB1102"));
        }
    }

    [Test]
    public async Task Repository_BudgetSpent_RefusesThatRepositoryOnly()
    {
        await using var broker = await BrokerHarness.StartAsync(Limits(("Repository:Burst", "2"), ("Repository:PerMinute", "1")));

        Assert.That((await broker.ExchangeAsync(broker.GitHubToken(), PaymentsAudience)).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await broker.ExchangeAsync(broker.GitHubToken(), PaymentsAudience)).Status, Is.EqualTo(HttpStatusCode.OK));

        var refused = await broker.ExchangeAsync(broker.GitHubToken(), PaymentsAudience);
        Assert.That(refused.Status, Is.EqualTo(HttpStatusCode.TooManyRequests), refused.Raw);
        Assert.That(refused.ErrorId, Is.EqualTo("TB1502"));
        Assert.That(refused.Headers.RetryAfter?.Delta?.TotalSeconds, Is.InRange(1, 60));
        var audit = broker.AuditFor(refused)!;
        Assert.That(audit.ErrorId, Is.EqualTo("TB1502"));
        Assert.That(audit.Detail, Does.Contain("RateLimits:Repository").And.Contain("repository_id '900101'").And.Contain("'github'"));
        Assert.That(audit.RepositoryId, Is.EqualTo("900101"));

        // Another repository of the same provider: reaches the rules (which do not know it), so its budget is untouched.
        var other = await broker.ExchangeAsync(broker.GitHubToken(tweak: c => c["repository_id"] = "900102"), PaymentsAudience);
        Assert.That(other.ErrorId, Is.EqualTo("TB1201"), other.Raw);

        // Another provider's repository is granted.
        var gitlab = await broker.ExchangeAsync(broker.GitLabToken(), "https://iac.internal/state");
        Assert.That(gitlab.ErrorId, Is.Not.EqualTo("TB1502"), gitlab.Raw);
    }

    [Test]
    public async Task Repository_ForgedTokensNamingIt_DoNotSpendItsBudget()
    {
        await using var broker = await BrokerHarness.StartAsync(Limits(("Repository:Burst", "2"), ("Repository:PerMinute", "1")));

        for (var i = 0; i < 10; i++)
        {
            var genuine = broker.GitHubToken();
            var parts = genuine.Split('.');
            var forged = parts[0] + "." + parts[1] + "." + JwtParts.B64(new byte[256]);
            var refused = await broker.ExchangeAsync(forged, PaymentsAudience);
            Assert.That(refused.ErrorId, Is.EqualTo("TB1110"), "a bad signature is refused first");
        }

        Assert.That((await broker.ExchangeAsync(broker.GitHubToken(), PaymentsAudience)).Status, Is.EqualTo(HttpStatusCode.OK), "the repository's budget is whole");
        Assert.That((await broker.ExchangeAsync(broker.GitHubToken(), PaymentsAudience)).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await broker.ExchangeAsync(broker.GitHubToken(), PaymentsAudience)).ErrorId, Is.EqualTo("TB1502"), "and it is a real limit");
    }

    [Test]
    public async Task Repository_Downscoping_SpendsTheIssuingRepositorysBudget()
    {
        await using var broker = await BrokerHarness.StartAsync(Limits(("Repository:Burst", "1"), ("Repository:PerMinute", "1")));
        var issued = await broker.ExchangeAsync(broker.GitHubToken(), PaymentsAudience);
        Assert.That(issued.Status, Is.EqualTo(HttpStatusCode.OK));

        var form = new List<KeyValuePair<string, string>>
        {
            new("grant_type", TokenBroker.Exchange.TokenTypes.TokenExchangeGrant),
            new("subject_token", issued.AccessToken!),
            new("subject_token_type", TokenBroker.Exchange.TokenTypes.AccessToken),
            new("audience", PaymentsAudience),
        };
        var downscoped = await broker.PostFormAsync(form);

        Assert.That(downscoped.ErrorId, Is.EqualTo("TB1502"), downscoped.Raw);
    }
}

/// <summary>The bounded token-bucket limiter on its own, with a clock the test moves.</summary>
[TestFixture]
public sealed class TokenBucketLimiterTests
{
    [Test]
    public void Bucket_RefillsAtTheConfiguredRate_AndSaysWhenToRetry()
    {
        var clock = new TickClock();
        var limiter = new TokenBucketLimiter("Test", new TokenBucketOptions { Burst = 2, PerMinute = 60 }, 100, clock);

        Assert.That(limiter.AttemptAcquire("a").IsAcquired, Is.True);
        Assert.That(limiter.AttemptAcquire("a").IsAcquired, Is.True);
        using var refused = limiter.AttemptAcquire("a");
        Assert.That(refused.IsAcquired, Is.False);
        Assert.That(refused.TryGetMetadata(System.Threading.RateLimiting.MetadataName.RetryAfter, out var wait), Is.True);
        Assert.That(wait, Is.EqualTo(TimeSpan.FromSeconds(1)));

        clock.Advance(TimeSpan.FromMilliseconds(1000));
        Assert.That(limiter.AttemptAcquire("a").IsAcquired, Is.True, "one permit a second");
        Assert.That(limiter.AttemptAcquire("a").IsAcquired, Is.False);
    }

    [Test]
    public void Partitions_UnderAFloodOfDistinctKeys_StayBounded()
    {
        var clock = new TickClock();
        var limiter = new TokenBucketLimiter("Test", new TokenBucketOptions { Burst = 5, PerMinute = 60 }, 100, clock);

        for (var i = 0; i < 10_000; i++)
        {
            limiter.AttemptAcquire("key-" + i).Dispose();
            if (i % 100 == 0)
            {
                clock.Advance(TimeSpan.FromMilliseconds(50));
            }
        }

        Assert.That(limiter.Count, Is.LessThanOrEqualTo(100));
        Assert.That(limiter.OverflowAcquisitions, Is.GreaterThan(0), "keys beyond the cap share the overflow bucket");

        // Once the buckets have refilled they are dropped, and new keys get their own bucket again.
        clock.Advance(TimeSpan.FromSeconds(31));
        Assert.That(limiter.AttemptAcquire("fresh").IsAcquired, Is.True);
        Assert.That(limiter.Count, Is.EqualTo(1));
    }

    [Test]
    public void ClientKey_GroupsIPv6ByPrefix_AndUnmapsIPv4()
    {
        Assert.That(ClientRateLimiter.ClientKey(IPAddress.Parse("2001:db8:1:2:aaaa::1"), 64), Is.EqualTo("2001:db8:1:2::/64"));
        Assert.That(ClientRateLimiter.ClientKey(IPAddress.Parse("2001:db8:1:2:bbbb::9"), 64), Is.EqualTo("2001:db8:1:2::/64"));
        Assert.That(ClientRateLimiter.ClientKey(IPAddress.Parse("::ffff:192.0.2.7"), 64), Is.EqualTo("192.0.2.7"));
        Assert.That(ClientRateLimiter.ClientKey(IPAddress.Parse("192.0.2.7"), 64), Is.EqualTo("192.0.2.7"));
    }
}

/// <summary>A clock whose timestamps only move when told to.</summary>
internal sealed class TickClock : TimeProvider
{
    private long _ticks;
    private DateTimeOffset _now = new(2026, 11, 22, 3, 0, 0, TimeSpan.Zero);

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => _ticks;

    public override DateTimeOffset GetUtcNow() => _now;

    public void Advance(TimeSpan by)
    {
        _ticks += by.Ticks;
        _now += by;
    }
}
