using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Configuration;
using TokenBroker.Hosting;
using TokenBroker.Signing;
using TokenBroker.Tests.Exchange;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Signing;

/// <summary>Key states driven by configured dates and a manual clock: announce, activate, retire, remove.</summary>
[TestFixture]
public sealed class KeyRotationTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 1, 12, 0, 0, TimeSpan.Zero);
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("tb-rotation-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private string PemKey(string name, string algorithm = "ES256")
    {
        var path = Path.Combine(_dir, name + ".pem");
        if (!File.Exists(path))
        {
            using AsymmetricAlgorithm key = algorithm.StartsWith("ES", StringComparison.Ordinal) ? ECDsa.Create(ECCurve.NamedCurves.nistP256) : RSA.Create(2048);
            File.WriteAllText(path, key.ExportPkcs8PrivateKeyPem());
        }

        return path;
    }

    /// <summary>old (active from the start) is replaced by new at T0 + 1 day; lead 1 hour, so max-age 30 minutes.</summary>
    private Dictionary<string, string?> Rotation() => new()
    {
        ["TokenBroker:Signing:AnnouncementLeadTime"] = "01:00:00",
        ["TokenBroker:Signing:Keys:0:Path"] = PemKey("old"),
        ["TokenBroker:Signing:Keys:0:KeyId"] = "old",
        ["TokenBroker:Signing:Keys:1:Path"] = PemKey("new"),
        ["TokenBroker:Signing:Keys:1:KeyId"] = "new",
        ["TokenBroker:Signing:Keys:1:ActivateAt"] = T0.AddDays(1).ToString("O"),
    };

    private static async Task<(string[] Kids, string? CacheControl)> JwksAsync(BrokerHarness broker)
    {
        using var response = await broker.Client.GetAsync(new Uri("/.well-known/jwks.json", UriKind.Relative));
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["keys"]!.AsArray();
        return (body.Select(k => k!["kid"]!.GetValue<string>()).ToArray(), response.Headers.CacheControl?.ToString());
    }

    private static async Task<string> IssuedKidAsync(BrokerHarness broker, ManualClock clock)
    {
        var response = await broker.ExchangeAsync(broker.GitHubToken(now: clock.GetUtcNow()), "https://deploy.internal/payments");
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        return JwtParts.Header(response.AccessToken!)["kid"]!.GetValue<string>();
    }

    [Test]
    public async Task Rotation_AnnouncesTheNewKeyBeforeItSigns_AndKeepsTheOldOneUntilItsTokensExpire()
    {
        var clock = new ManualClock(T0);
        await using var broker = await BrokerHarness.StartAsync(Rotation(), time: clock);

        var (kids, cache) = await JwksAsync(broker);
        Assert.That(kids, Is.EqualTo(new[] { "old" }), "more than the lead time before activation the new key is not published");
        Assert.That(cache, Does.Contain("max-age=1800"), "max-age is half the announcement lead time");
        Assert.That(await IssuedKidAsync(broker, clock), Is.EqualTo("old"));

        clock.Advance(TimeSpan.FromHours(23) + TimeSpan.FromMinutes(1)); // 59 minutes before activation
        Assert.That((await JwksAsync(broker)).Kids, Is.EquivalentTo(new[] { "old", "new" }), "next: published");
        Assert.That(await IssuedKidAsync(broker, clock), Is.EqualTo("old"), "next: not signing yet");

        clock.Advance(TimeSpan.FromMinutes(59)); // activation
        var retiredToken = await broker.ExchangeAsync(broker.GitHubToken(now: clock.GetUtcNow()), "https://deploy.internal/payments");
        Assert.That(await IssuedKidAsync(broker, clock), Is.EqualTo("new"));
        Assert.That((await JwksAsync(broker)).Kids, Is.EquivalentTo(new[] { "old", "new" }), "retired: still published");

        // Retention: Rules:MaxTtl (1 h) + max-age (30 min) + Exchange:ClockSkew (30 s).
        clock.Advance(TimeSpan.FromMinutes(90) + TimeSpan.FromSeconds(29));
        Assert.That((await JwksAsync(broker)).Kids, Is.EquivalentTo(new[] { "old", "new" }));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.That((await JwksAsync(broker)).Kids, Is.EqualTo(new[] { "new" }), "removed once every token it signed has expired");
        Assert.That(retiredToken.Status, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task TwoReplicasWithTheSameConfiguration_PublishTheSameKeys_AndAgreeOnTheActiveKey()
    {
        var settings = Rotation();
        var errors = new List<string>();
        var clock = new ManualClock(T0);
        var config = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var resolved = SettingsResolver.Resolve(config, errors, clock)!;
        Assert.That(errors, Is.Empty);
        using var a = SigningKeyRing.FromSettings(resolved, clock);
        using var b = SigningKeyRing.FromSettings(resolved, clock);

        foreach (var offset in new[] { 0, 23 * 60 + 1, 24 * 60, 24 * 60 + 120 })
        {
            clock.Advance(TimeSpan.FromMinutes(offset) - (clock.GetUtcNow() - T0));
            Assert.That(a.JwksJson, Is.EqualTo(b.JwksJson), $"JWKS at +{offset} min");
            Assert.That(a.Active.KeyId, Is.EqualTo(b.Active.KeyId), $"active key at +{offset} min");
        }

        Assert.That(a.Active.KeyId, Is.EqualTo("new"));
        Assert.That(a.Entries.Select(e => e.Timeline.StateAt(clock.GetUtcNow())), Is.EqualTo(new[] { KeyState.Removed, KeyState.Active }));
    }

    [Test]
    public void KeyTimeline_PassesThroughEveryState()
    {
        var errors = new List<string>();
        var timelines = KeySchedule.Compute(
            [new SigningKeyOptions { Algorithm = "ES256" }, new SigningKeyOptions { Algorithm = "ES256", ActivateAt = T0 }],
            TimeSpan.FromHours(1), TimeSpan.FromHours(2), errors);

        Assert.That(errors, Is.Empty);
        var next = timelines[1];
        Assert.That(next.StateAt(T0.AddHours(-2)), Is.EqualTo(KeyState.Scheduled));
        Assert.That(next.StateAt(T0.AddHours(-1)), Is.EqualTo(KeyState.Next));
        Assert.That(next.StateAt(T0), Is.EqualTo(KeyState.Active));
        var old = timelines[0];
        Assert.That(old.StateAt(T0.AddTicks(-1)), Is.EqualTo(KeyState.Active));
        Assert.That(old.RetireAt, Is.EqualTo(T0), "retires when its successor activates");
        Assert.That(old.StateAt(T0), Is.EqualTo(KeyState.Retired));
        Assert.That(old.StateAt(T0.AddHours(2).AddTicks(-1)), Is.EqualTo(KeyState.Retired));
        Assert.That(old.StateAt(T0.AddHours(2)), Is.EqualTo(KeyState.Removed));
    }

    [Test]
    public void UnsafeSchedules_AreAllReportedAtOnce()
    {
        var built = BrokerApp.Build(new BrokerAppOptions
        {
            Time = new ManualClock(T0),
            Overrides = new Dictionary<string, string?>
            {
                ["TokenBroker:Signing:AnnouncementLeadTime"] = "00:00:30",
                ["TokenBroker:Signing:Keys:0:Path"] = PemKey("a"),
                ["TokenBroker:Signing:Keys:0:RemoveAt"] = T0.AddDays(1).ToString("O"),
                ["TokenBroker:Signing:Keys:1:Path"] = PemKey("b"),
                ["TokenBroker:Signing:Keys:2:Path"] = PemKey("c"),
                ["TokenBroker:Signing:Keys:2:ActivateAt"] = T0.AddDays(1).ToString("O"),
                ["TokenBroker:Signing:Keys:2:RetireAt"] = T0.AddDays(2).ToString("O"),
                ["TokenBroker:Signing:Keys:2:RemoveAt"] = T0.AddDays(2).AddMinutes(10).ToString("O"),
                ["TokenBroker:Signing:Keys:3:Path"] = PemKey("r", "RS256"),
                ["TokenBroker:Signing:Keys:3:Algorithm"] = "RS256",
                ["TokenBroker:Signing:Keys:3:ActivateAt"] = T0.AddDays(3).ToString("O"),
                ["TokenBroker:Signing:Keys:3:RetireAt"] = T0.AddDays(2).ToString("O"),
                ["TokenBroker:Signing:AudienceAlgorithms:0:Audience"] = "api://AzureADTokenExchange",
                ["TokenBroker:Signing:AudienceAlgorithms:0:Algorithm"] = "RS256",
                ["TokenBroker:Signing:AudienceAlgorithms:1:Audience"] = "https://legacy.example",
                ["TokenBroker:Signing:AudienceAlgorithms:1:Algorithm"] = "HS256",
            },
        });

        Assert.That(built.App, Is.Null);
        var errors = built.Errors;
        Assert.That(errors, Has.Some.Contains("Signing:AnnouncementLeadTime"));
        Assert.That(errors, Has.Some.Contains("Signing:Keys:1 and Signing:Keys:0 are both ES256 keys without ActivateAt"));
        Assert.That(errors, Has.Some.Contains("Signing:Keys:0:RemoveAt").And.Contains("too early"), "key 0 retires when key 2 activates");
        Assert.That(errors, Has.Some.Contains("Signing:Keys:2:RemoveAt").And.Contains("too early"));
        Assert.That(errors, Has.Some.Contains("Signing:Keys:3:RetireAt must be later than its ActivateAt"));
        Assert.That(errors, Has.Some.Contains("no RS256 key is active now"));
        Assert.That(errors, Has.Some.Contains("from " + T0.AddDays(2).ToString("O") + " no ES256 key is active"));
        Assert.That(errors, Has.Some.Contains("Signing:AudienceAlgorithms:1:Algorithm 'HS256'"));
    }

    [Test]
    public async Task AudienceMappedToRs256_GetsAnRs256Token_VerifiableWithTheJwks_AndConflictingAudiencesAreRefusedWithoutConsumingTheJobToken()
    {
        var settings = new Dictionary<string, string?>
        {
            ["TokenBroker:Signing:Keys:0:Path"] = PemKey("es"),
            ["TokenBroker:Signing:Keys:0:KeyId"] = "es",
            ["TokenBroker:Signing:Keys:1:Path"] = PemKey("rs", "RS256"),
            ["TokenBroker:Signing:Keys:1:Algorithm"] = "RS256",
            ["TokenBroker:Signing:Keys:1:KeyId"] = "rs",
            ["TokenBroker:Signing:AudienceAlgorithms:0:Audience"] = "sts.amazonaws.com",
            ["TokenBroker:Signing:AudienceAlgorithms:0:Algorithm"] = "RS256",
        };
        await using var broker = await BrokerHarness.StartAsync(settings);

        var rs = await broker.ExchangeAsync(broker.GitHubToken(), "sts.amazonaws.com");
        Assert.That(rs.Status, Is.EqualTo(HttpStatusCode.OK), rs.Raw);
        Assert.That(JwtParts.Header(rs.AccessToken!)["alg"]!.GetValue<string>(), Is.EqualTo("RS256"));
        var jwks = new JsonWebKeySet(await broker.Client.GetStringAsync(new Uri("/.well-known/jwks.json", UriKind.Relative)));
        var verified = await new JsonWebTokenHandler().ValidateTokenAsync(rs.AccessToken!, new TokenValidationParameters
        {
            ValidIssuer = broker.Url,
            ValidAudience = "sts.amazonaws.com",
            IssuerSigningKeys = jwks.GetSigningKeys(),
            ValidAlgorithms = ["RS256"],
        });
        Assert.That(verified.IsValid, Is.True, verified.Exception?.Message);

        var jobToken = broker.GitHubToken();
        var conflict = await broker.ExchangeAsync(jobToken, "sts.amazonaws.com", "https://deploy.internal/payments");
        Assert.That(conflict.Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(conflict.ErrorId, Is.EqualTo("TB1210"));
        Assert.That(conflict.Error, Is.EqualTo("invalid_target"));

        var es = await broker.ExchangeAsync(jobToken, "https://deploy.internal/payments");
        Assert.That(es.Status, Is.EqualTo(HttpStatusCode.OK), "the refused exchange did not consume the job token: " + es.Raw);
        Assert.That(JwtParts.Header(es.AccessToken!)["alg"]!.GetValue<string>(), Is.EqualTo("ES256"));

        var ready = await broker.Client.GetStringAsync(new Uri("/readyz", UriKind.Relative));
        Assert.That(ready, Does.Contain("ES256 key 'es' signs").And.Contain("RS256 key 'rs' signs"));
    }
}
