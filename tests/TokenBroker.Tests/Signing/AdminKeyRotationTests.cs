using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Hosting;
using TokenBroker.Tests.Exchange;
using TokenBroker.Tests.Infrastructure;
using TokenBroker.Tests.State;

namespace TokenBroker.Tests.Signing;

/// <summary>
/// Rotation by an authenticated admin action (a standby key promoted through the shared state store) and by
/// Signing:RotateEvery, driven by a manual clock. Lead time 1 hour (JWKS max-age 30 minutes), Rules:MaxTtl 1 hour
/// and clock skew 30 s, so a retired key stays published for 1 h 30 min 30 s.
/// </summary>
[TestFixture]
public sealed class AdminKeyRotationTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 1, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Retention = TimeSpan.FromMinutes(90) + TimeSpan.FromSeconds(30);
    private readonly StateApi _api = StateApi.Create();
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("tb-admin-rotation-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private string PemKey(string name)
    {
        var path = Path.Combine(_dir, name + ".pem");
        if (!File.Exists(path))
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            File.WriteAllText(path, key.ExportPkcs8PrivateKeyPem());
        }

        return path;
    }

    /// <summary>"old" signs; "spare-1" and "spare-2" are standby keys from the ceremony.</summary>
    private Dictionary<string, string?> WithStandbyKeys()
    {
        var settings = _api.Settings();
        settings["TokenBroker:Signing:AnnouncementLeadTime"] = "01:00:00";
        settings["TokenBroker:Signing:Keys:0:Path"] = PemKey("old");
        settings["TokenBroker:Signing:Keys:0:KeyId"] = "old";
        settings["TokenBroker:Signing:Keys:1:Path"] = PemKey("spare-1");
        settings["TokenBroker:Signing:Keys:1:KeyId"] = "spare-1";
        settings["TokenBroker:Signing:Keys:1:Standby"] = "true";
        settings["TokenBroker:Signing:Keys:2:Path"] = PemKey("spare-2");
        settings["TokenBroker:Signing:Keys:2:KeyId"] = "spare-2";
        settings["TokenBroker:Signing:Keys:2:Standby"] = "true";
        return settings;
    }

    private static async Task<(string[] Kids, byte[] Raw)> JwksAsync(BrokerHarness broker)
    {
        var raw = await broker.Client.GetByteArrayAsync(new Uri("/.well-known/jwks.json", UriKind.Relative));
        var keys = JsonNode.Parse(raw)!["keys"]!.AsArray();
        return (keys.Select(k => k!["kid"]!.GetValue<string>()).Order(StringComparer.Ordinal).ToArray(), raw);
    }

    private static async Task<string> IssuedKidAsync(BrokerHarness broker, ManualClock clock)
    {
        var response = await broker.ExchangeAsync(broker.GitHubToken(now: clock.GetUtcNow()), "https://deploy.internal/payments");
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        var jwks = new JsonWebKeySet(await broker.Client.GetStringAsync(new Uri("/.well-known/jwks.json", UriKind.Relative)));
        var verified = await new JsonWebTokenHandler().ValidateTokenAsync(response.AccessToken!, new TokenValidationParameters
        {
            ValidIssuer = broker.BrokerIssuer,
            ValidAudience = "https://deploy.internal/payments",
            IssuerSigningKeys = jwks.GetSigningKeys(),
            LifetimeValidator = (_, _, _, _) => true, // the manual clock is not the validator's clock
        });
        Assert.That(verified.IsValid, Is.True, "every issued token verifies against the JWKS published at that moment: " + verified.Exception?.Message);
        return JwtParts.Header(response.AccessToken!)["kid"]!.GetValue<string>();
    }

    private static Dictionary<string, string> States(ExchangeResponse list) =>
        list.Body["keys"]!.AsArray().ToDictionary(k => k!["kid"]!.GetValue<string>(), k => k!["state"]!.GetValue<string>());

    [Test]
    public async Task AdminRotation_PublishesTheStandbyKeyAtOnce_SignsWithItAfterTheLeadTime_AndKeepsTheOldKeyUntilItsTokensExpire()
    {
        var clock = new ManualClock(T0);
        await using var broker = await BrokerHarness.StartAsync(WithStandbyKeys(), time: clock);

        var list = await _api.AdminAsync(broker, HttpMethod.Get, "/admin/keys");
        Assert.That(list.Status, Is.EqualTo(HttpStatusCode.OK), list.Raw);
        Assert.That(States(list), Is.EqualTo(new Dictionary<string, string> { ["old"] = "active", ["spare-1"] = "standby", ["spare-2"] = "standby" }));
        Assert.That((await JwksAsync(broker)).Kids, Is.EqualTo(new[] { "old" }), "standby keys are not published");

        var rotate = await _api.AdminAsync(broker, HttpMethod.Post, "/admin/keys/rotate", """{"reason":"quarterly rotation"}""");
        Assert.That(rotate.Status, Is.EqualTo(HttpStatusCode.Created), rotate.Raw);
        Assert.That(rotate.Body["rotation"]!["kid"]!.GetValue<string>(), Is.EqualTo("spare-1"), "the first unused standby key of the default algorithm");
        Assert.That(rotate.Body["rotation"]!["retiring_kid"]!.GetValue<string>(), Is.EqualTo("old"));
        Assert.That(DateTimeOffset.Parse(rotate.Body["rotation"]!["activate_at"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture), Is.EqualTo(T0.AddHours(1)));

        Assert.That((await JwksAsync(broker)).Kids, Is.EqualTo(new[] { "old", "spare-1" }), "announced at once");
        Assert.That(await IssuedKidAsync(broker, clock), Is.EqualTo("old"), "the old key signs until the lead time has passed");
        Assert.That(States(await _api.AdminAsync(broker, HttpMethod.Get, "/admin/keys"))["spare-1"], Is.EqualTo("next"));

        var again = await _api.AdminAsync(broker, HttpMethod.Post, "/admin/keys/rotate", "{}");
        Assert.That(again.ErrorId, Is.EqualTo("TB1409"), "spare-2 cannot be promoted while spare-1 is pending: " + again.Raw);
        Assert.That(again.Status, Is.EqualTo(HttpStatusCode.Conflict));

        clock.Advance(TimeSpan.FromHours(1) - TimeSpan.FromTicks(1));
        Assert.That(await IssuedKidAsync(broker, clock), Is.EqualTo("old"));
        clock.Advance(TimeSpan.FromTicks(1));
        Assert.That(await IssuedKidAsync(broker, clock), Is.EqualTo("spare-1"), "the promoted key signs from its activation");
        Assert.That((await JwksAsync(broker)).Kids, Is.EqualTo(new[] { "old", "spare-1" }), "the retired key stays published");

        clock.Advance(Retention - TimeSpan.FromSeconds(1));
        Assert.That((await JwksAsync(broker)).Kids, Is.EqualTo(new[] { "old", "spare-1" }));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.That((await JwksAsync(broker)).Kids, Is.EqualTo(new[] { "spare-1" }), "removed once every token it signed has expired and caches have turned over");
        Assert.That(States(await _api.AdminAsync(broker, HttpMethod.Get, "/admin/keys")), Is.EqualTo(new Dictionary<string, string> { ["old"] = "removed", ["spare-1"] = "active", ["spare-2"] = "standby" }));

        var second = await _api.AdminAsync(broker, HttpMethod.Post, "/admin/keys/rotate", """{"kid":"spare-2"}""");
        Assert.That(second.Status, Is.EqualTo(HttpStatusCode.Created), "the next rotation, once the first has taken effect: " + second.Raw);
        Assert.That(second.Body["rotation"]!["retiring_kid"]!.GetValue<string>(), Is.EqualTo("spare-1"));

        var audit = broker.Audit.Events.Where(e => e.Type == "admin.keys.rotate").ToList();
        Assert.That(audit.Select(e => e.Outcome), Is.EqualTo(new[] { "done", "refused", "done" }));
        Assert.That(audit[0].Detail, Does.Contain("promoted spare-1").And.Contains("quarterly rotation"));
        Assert.That(audit[0].Actor, Is.EqualTo("ops-admin"));
        Assert.That(audit[1].ErrorId, Is.EqualTo("TB1409"));
    }

    private static IEnumerable<TestCaseData> Refusals()
    {
        yield return new TestCaseData("""{"kid":"nope"}""", HttpStatusCode.NotFound, "TB1404").SetName("Rotate_ToAnUnknownKid_IsRefusedAsNotFound");
        yield return new TestCaseData("""{"kid":"old"}""", HttpStatusCode.Conflict, "TB1408").SetName("Rotate_ToAKeyThatIsNotStandby_IsRefused");
        yield return new TestCaseData("""{"algorithm":"RS256"}""", HttpStatusCode.Conflict, "TB1408").SetName("Rotate_WithNoStandbyKeyOfThatAlgorithm_IsRefused");
        yield return new TestCaseData("""{"algorithm":"HS256"}""", HttpStatusCode.BadRequest, "TB1402").SetName("Rotate_ToAnUnsupportedAlgorithm_IsRefused");
        yield return new TestCaseData("""{"kid":"spare-1","algorithm":"RS256"}""", HttpStatusCode.BadRequest, "TB1402").SetName("Rotate_WithAKidOfAnotherAlgorithm_IsRefused");
        yield return new TestCaseData("""{"kid":"spare-1","when":"now"}""", HttpStatusCode.BadRequest, "TB1402").SetName("Rotate_WithAnUnknownProperty_IsRefused");
    }

    [TestCaseSource(nameof(Refusals))]
    public async Task RotateRefusals(string body, HttpStatusCode status, string errorId)
    {
        await using var broker = await BrokerHarness.StartAsync(WithStandbyKeys(), time: new ManualClock(T0));

        var response = await _api.AdminAsync(broker, HttpMethod.Post, "/admin/keys/rotate", body);

        Assert.That(response.Status, Is.EqualTo(status), response.Raw);
        Assert.That(response.ErrorId, Is.EqualTo(errorId));
        Assert.That((await JwksAsync(broker)).Kids, Is.EqualTo(new[] { "old" }), "nothing changed");
        Assert.That(broker.Audit.Events.Single(e => e.Type == "admin.keys.rotate").ErrorId, Is.EqualTo(errorId));
    }

    [Test]
    public async Task Rotate_WithoutAnAdminCredential_IsRefusedAndChangesNothing()
    {
        await using var broker = await BrokerHarness.StartAsync(WithStandbyKeys(), time: new ManualClock(T0));

        var response = await _api.AdminAsync(broker, HttpMethod.Post, "/admin/keys/rotate", "{}", authenticate: false);
        var list = await _api.AdminAsync(broker, HttpMethod.Get, "/admin/keys", authenticate: false);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(response.ErrorId, Is.EqualTo("TB1401"));
        Assert.That(list.ErrorId, Is.EqualTo("TB1401"));
        Assert.That((await JwksAsync(broker)).Kids, Is.EqualTo(new[] { "old" }));
    }

    [Test]
    public async Task RotateEvery_CyclesThroughThePoolOnePeriodAtATime_AnnouncingEachKeyAndKeepingTheLastOne()
    {
        var settings = _api.Settings();
        settings["TokenBroker:Signing:AnnouncementLeadTime"] = "01:00:00";
        settings["TokenBroker:Signing:RotateEvery"] = "1.00:00:00";
        settings["TokenBroker:Signing:RotateFrom"] = T0.ToString("O");
        for (var i = 0; i < 3; i++)
        {
            settings[$"TokenBroker:Signing:Keys:{i}:Path"] = PemKey($"k{i}");
            settings[$"TokenBroker:Signing:Keys:{i}:KeyId"] = $"k{i}";
        }

        var clock = new ManualClock(T0.AddHours(1));
        await using var broker = await BrokerHarness.StartAsync(settings, time: clock);

        // k1 activates at T0 + 1 day, k2 at T0 + 2 days; k2 is the last of the pool and keeps signing.
        (TimeSpan At, string Signs, string[] Published)[] timeline =
        [
            (TimeSpan.FromHours(1), "k0", ["k0"]),
            (TimeSpan.FromHours(23) - TimeSpan.FromSeconds(1), "k0", ["k0"]),
            (TimeSpan.FromHours(23), "k0", ["k0", "k1"]),
            (TimeSpan.FromDays(1), "k1", ["k0", "k1"]),
            (TimeSpan.FromDays(1) + Retention, "k1", ["k1"]),
            (TimeSpan.FromDays(2) - TimeSpan.FromHours(1), "k1", ["k1", "k2"]),
            (TimeSpan.FromDays(2), "k2", ["k1", "k2"]),
            (TimeSpan.FromDays(2) + Retention, "k2", ["k2"]),
            (TimeSpan.FromDays(30), "k2", ["k2"]),
        ];
        foreach (var (at, signs, published) in timeline)
        {
            clock.Advance(T0 + at - clock.GetUtcNow());
            Assert.That(await IssuedKidAsync(broker, clock), Is.EqualTo(signs), $"signing key at T0 + {at}");
            Assert.That((await JwksAsync(broker)).Kids, Is.EqualTo(published), $"JWKS at T0 + {at}");
        }
    }

    [Test]
    public void AStoreThatLostItsRecord_RevertsTheRing_AndALaterRotationFromVersionOneStillApplies()
    {
        var clock = new ManualClock(T0);
        var errors = new List<string>();
        var config = new ConfigurationBuilder().AddInMemoryCollection(WithStandbyKeys()).AddInMemoryCollection(new Dictionary<string, string?> { ["TokenBroker:Issuer"] = "https://broker.example" }).Build();
        var settings = TokenBroker.Configuration.SettingsResolver.Resolve(config, errors, clock)!;
        Assert.That(errors, Is.Empty);
        using var ring = TokenBroker.Signing.SigningKeyRing.FromSettings(settings, clock);
        TokenBroker.State.KeyRotation Rotation(string kid) => new() { KeyId = kid, Algorithm = "ES256", ActivateAt = T0.AddHours(1), RequestedAt = T0, RequestedBy = "t" };
        string[] Published() => JsonNode.Parse(ring.JwksJson)!["keys"]!.AsArray().Select(k => k!["kid"]!.GetValue<string>()).Order(StringComparer.Ordinal).ToArray();

        Assert.That(ring.ApplyRotations(new TokenBroker.State.KeyRotationSet(3, [Rotation("spare-1")]), errors), Is.True);
        Assert.That(Published(), Is.EqualTo(new[] { "old", "spare-1" }));

        Assert.That(ring.ApplyRotations(TokenBroker.State.KeyRotationSet.Empty, errors), Is.True);
        Assert.That(Published(), Is.EqualTo(new[] { "old" }), "every replica reads the same empty record and falls back to the configuration alike");

        Assert.That(ring.ApplyRotations(new TokenBroker.State.KeyRotationSet(1, [Rotation("spare-2")]), errors), Is.True);
        Assert.That(Published(), Is.EqualTo(new[] { "old", "spare-2" }), "a version lower than one seen before is not ignored");
        Assert.That(errors, Is.Empty);
    }

    private static IEnumerable<TestCaseData> BadRotationSettings()
    {
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Signing:RotateEvery"] = "30.00:00:00" }, "Signing:RotateFrom is required")
            .SetName("RotateEvery_WithoutRotateFrom_IsAStartupError");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Signing:RotateFrom"] = T0.ToString("O") }, "Signing:RotateFrom is only allowed with Signing:RotateEvery")
            .SetName("RotateFrom_WithoutRotateEvery_IsAStartupError");
        yield return new TestCaseData(new Dictionary<string, string?>
        {
            ["TokenBroker:Signing:RotateEvery"] = "30.00:00:00",
            ["TokenBroker:Signing:RotateFrom"] = T0.ToString("O"),
            ["TokenBroker:Signing:Keys:1:Source"] = "generated",
            ["TokenBroker:Signing:Keys:1:ActivateAt"] = T0.AddDays(3).ToString("O"),
        }, "Signing:Keys:1: ActivateAt and RetireAt cannot be combined with Signing:RotateEvery").SetName("RotateEvery_WithAnExplicitActivateAt_IsAStartupError");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Signing:RotateEvery"] = "00:05:00", ["TokenBroker:Signing:RotateFrom"] = T0.ToString("O") }, "Signing:RotateEvery must be between 1 hour and 3650 days")
            .SetName("RotateEvery_ShorterThanAnHour_IsAStartupError");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Signing:Keys:1:Source"] = "generated", ["TokenBroker:Signing:Keys:1:Standby"] = "true" }, "Signing:Keys:1: a Standby key needs a KeyId")
            .SetName("StandbyKey_WithoutAKeyId_IsAStartupError");
        yield return new TestCaseData(new Dictionary<string, string?>
        {
            ["TokenBroker:Signing:Keys:1:Source"] = "generated",
            ["TokenBroker:Signing:Keys:1:Standby"] = "true",
            ["TokenBroker:Signing:Keys:1:KeyId"] = "s",
            ["TokenBroker:Signing:Keys:1:ActivateAt"] = T0.AddDays(3).ToString("O"),
        }, "Signing:Keys:1: a Standby key has no ActivateAt").SetName("StandbyKey_WithDates_IsAStartupError");
        yield return new TestCaseData(new Dictionary<string, string?>
        {
            ["TokenBroker:Signing:RotateEvery"] = "30.00:00:00",
            ["TokenBroker:Signing:RotateFrom"] = T0.ToString("O"),
            ["TokenBroker:Signing:Keys:1:Source"] = "generated",
            ["TokenBroker:State:Store"] = "redis",
            ["TokenBroker:State:Redis:Endpoints:0"] = "127.0.0.1:1",
        }, "Signing:Keys:1: Signing:RotateEvery cannot use generated keys with State:Store redis").SetName("RotateEvery_WithGeneratedKeysAndRedis_IsAStartupError");
    }

    [TestCaseSource(nameof(BadRotationSettings))]
    public void BadRotationSettingsAreRefusedAtStartup(Dictionary<string, string?> extra, string expected)
    {
        var overrides = new Dictionary<string, string?>
        {
            ["TokenBroker:Issuer"] = "https://broker.example",
            ["TokenBroker:Signing:Keys:0:Path"] = PemKey("first"),
        };
        foreach (var (k, v) in extra)
        {
            overrides[k] = v;
        }

        var built = BrokerApp.Build(new BrokerAppOptions { Time = new ManualClock(T0), Overrides = overrides });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains(expected), string.Join("\n", built.Errors));
    }
}
