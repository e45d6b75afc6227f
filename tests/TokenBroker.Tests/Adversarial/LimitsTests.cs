using System.Net;
using System.Text.Json.Nodes;
using TokenBroker.Hosting;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Adversarial;

/// <summary>
/// The request and token limits of <c>TokenBroker:Limits</c>: each is configurable (a tighter setting refuses what the
/// default accepts, and accepts exactly at the limit), and each holds before the broker looks for keys or checks a
/// signature.
/// </summary>
[TestFixture]
public sealed class LimitsTests
{
    private static readonly Dictionary<string, string?> TightLimits = new()
    {
        ["TokenBroker:Limits:MaxRequestBodyBytes"] = "8192",
        ["TokenBroker:Limits:MaxTokenBytes"] = "4096",
        ["TokenBroker:Limits:MaxFormFields"] = "8",
        ["TokenBroker:Limits:MaxParameterLength"] = "256",
        ["TokenBroker:Limits:MaxClaims"] = "40",
        ["TokenBroker:Limits:MaxJsonDepth"] = "3",
    };

    private BrokerHarness _default = null!;
    private BrokerHarness _tight = null!;
    private Attacker _attacker = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _default = await BrokerHarness.StartAsync();
        _tight = await BrokerHarness.StartAsync(TightLimits);
        _attacker = new Attacker();
        await AdversarialSuiteTests.WarmUpAsync(_default);
        await AdversarialSuiteTests.WarmUpAsync(_tight);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        _attacker.Dispose();
        await _tight.DisposeAsync();
        await _default.DisposeAsync();
    }

    /// <summary>
    /// One limit: a token tweak and extra form fields that exceed the tight setting (and not the default), and the
    /// refusal they get. <see cref="AtLimit"/>, when given, builds the same request exactly at the tight limit.
    /// </summary>
    internal sealed record LimitCase(string Name, string ErrorId, HttpStatusCode Status, Action<JsonObject>? Tweak, Func<List<KeyValuePair<string, string>>> Extra)
    {
        public (Action<JsonObject>? Tweak, Func<List<KeyValuePair<string, string>>> Extra)? AtLimit { get; init; }

        public override string ToString() => Name;
    }

    private static List<KeyValuePair<string, string>> None() => [];

    private static List<KeyValuePair<string, string>> Fields(int count, int length = 1) =>
        [.. Enumerable.Range(0, count).Select(i => new KeyValuePair<string, string>($"x{i}", new string('p', length)))];

    private static void AddClaims(JsonObject payload, int count)
    {
        for (var i = 0; i < count; i++)
        {
            payload[$"extra_{i}"] = i;
        }
    }

    private static readonly Dictionary<string, LimitCase> Cases = new LimitCase[]
    {
        // A job token has 31 claims here; 9 more reach the tight limit of 40.
        new("MaxClaims", "TB1119", HttpStatusCode.BadRequest, p => AddClaims(p, 15), None) { AtLimit = (p => AddClaims(p, 9), None) },

        // The payload object is level 1; x is 2, a is 3, b is 4.
        new("MaxJsonDepth", "TB1119", HttpStatusCode.BadRequest, p => p["x"] = new JsonObject { ["a"] = new JsonObject { ["b"] = new JsonObject() } }, None)
        {
            AtLimit = (p => p["x"] = new JsonObject { ["a"] = new JsonObject() }, None),
        },
        new("MaxTokenBytes", "TB1101", HttpStatusCode.BadRequest, p => p["pad"] = new string('t', 3000), None),

        // The exchange form has 4 fields.
        new("MaxFormFields", "TB1012", HttpStatusCode.BadRequest, null, () => Fields(5)) { AtLimit = (null, () => Fields(4)) },
        new("MaxParameterLength", "TB1012", HttpStatusCode.BadRequest, null, () => Fields(1, 257)) { AtLimit = (null, () => Fields(1, 256)) },

        // Five fields of 1,900 characters: under the default MaxParameterLength (2,048), over 8 KiB in total.
        new("MaxRequestBodyBytes", "TB1004", HttpStatusCode.RequestEntityTooLarge, null, () => Fields(5, 1900)),
    }.ToDictionary(c => c.Name);

    public static IEnumerable<string> Limits() => Cases.Keys;

    public static IEnumerable<string> LimitsWithBoundary() => Cases.Values.Where(c => c.AtLimit is not null).Select(c => c.Name);

    private static List<KeyValuePair<string, string>> Form(string token, Func<List<KeyValuePair<string, string>>> extra) =>
        [.. BrokerHarness.ExchangeForm(token, AttackKit.DeployAudience), .. extra()];

    /// <summary>The same claims, but signed by the attacker's key under a kid the provider does not publish.</summary>
    private string Forged(BrokerHarness broker, Action<JsonObject>? tweak) =>
        _attacker.Sign(new JsonObject { ["typ"] = "JWT", ["alg"] = "RS256", ["kid"] = "unpublished-" + Guid.NewGuid().ToString("N") }, JwtParts.Payload(broker.GitHubToken(tweak: tweak)));

    private static void AssertRefused(BrokerHarness broker, ExchangeResponse response, LimitCase limit)
    {
        Assert.That(response.Status, Is.EqualTo(limit.Status), response.Raw);
        Assert.That(response.Error, Is.EqualTo("invalid_request"));
        Assert.That(response.ErrorId, Is.EqualTo(limit.ErrorId), response.Raw);
        Assert.That(response.Body.ContainsKey("access_token"), Is.False);
        var audit = broker.AuditFor(response);
        Assert.That(audit?.Outcome, Is.EqualTo("refused"));
        Assert.That(audit!.ErrorId, Is.EqualTo(limit.ErrorId));
        Assert.That(audit.IssuedJti, Is.Null);
    }

    [TestCaseSource(nameof(Limits))]
    public async Task TightLimit_RefusesWhatTheDefaultAccepts(string name)
    {
        var limit = Cases[name];

        var accepted = await _default.PostFormAsync(Form(_default.GitHubToken(tweak: limit.Tweak), limit.Extra));
        var refused = await _tight.PostFormAsync(Form(_tight.GitHubToken(tweak: limit.Tweak), limit.Extra), expectContinue: true);

        Assert.That(accepted.Status, Is.EqualTo(HttpStatusCode.OK), "the default limit accepts it: " + accepted.Raw);
        AssertRefused(_tight, refused, limit);
    }

    [TestCaseSource(nameof(LimitsWithBoundary))]
    public async Task TightLimit_AcceptsExactlyAtTheLimit(string name)
    {
        var (tweak, extra) = Cases[name].AtLimit!.Value;

        var response = await _tight.PostFormAsync(Form(_tight.GitHubToken(tweak: tweak), extra));

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
    }

    [TestCaseSource(nameof(Limits))]
    public async Task Limit_HoldsBeforeKeyLookupAndSignature(string name)
    {
        var limit = Cases[name];
        var discovery = _tight.Issuer.DiscoveryHits;
        var jwks = _tight.Issuer.JwksHits;

        var response = await _tight.PostFormAsync(Form(Forged(_tight, limit.Tweak), limit.Extra), expectContinue: true);

        AssertRefused(_tight, response, limit);
        Assert.That((_tight.Issuer.DiscoveryHits - discovery, _tight.Issuer.JwksHits - jwks), Is.EqualTo((0, 0)), "an over-limit request never reaches the provider");
        Assert.That(_tight.AuditFor(response)!.Detail, Does.Not.Contain("kid").And.Not.Contain("signature"));

        // Control: the same forged token within the limits gets as far as the key lookup.
        var control = await _tight.ExchangeAsync(Forged(_tight, null), AttackKit.DeployAudience);
        Assert.That(control.ErrorId, Is.EqualTo("TB1109"), control.Raw);
    }

    [Test]
    public async Task DepthLimit_IsCheckedBeforeTheJsonParser()
    {
        // Nesting past the limit followed by text that is not JSON at all: the depth scan answers, not the parser.
        var header = "{\"typ\":\"JWT\",\"alg\":\"RS256\",\"kid\":\"" + _tight.Issuer.KeyId("github") + "\"}";
        var token = AttackKit.Raw(header, "{\"x\":[[[[[ not json");

        var response = await _tight.ExchangeAsync(token, AttackKit.DeployAudience);

        Assert.That(response.ErrorId, Is.EqualTo("TB1119"), response.Raw);
        Assert.That(_tight.AuditFor(response)!.Detail, Does.Contain("nesting exceeds 3"));
    }

    [Test]
    public async Task ClaimLimit_IsCheckedBeforeTheHeader()
    {
        // alg none and too many claims: the limit answers first, before anything in the header is interpreted.
        var payload = JwtParts.Payload(_tight.GitHubToken(tweak: p => AddClaims(p, 15)));
        var token = JwtParts.B64("{\"alg\":\"none\"}") + "." + JwtParts.B64(payload.ToJsonString()) + ".AAAA";

        var response = await _tight.ExchangeAsync(token, AttackKit.DeployAudience);

        Assert.That(response.ErrorId, Is.EqualTo("TB1119"), response.Raw);
    }

    [Test]
    public async Task EveryLimitOutOfRange_IsReportedAtOnce()
    {
        var built = BrokerApp.Build(new BrokerAppOptions
        {
            MinimumLogLevel = LogLevel.Warning,
            Overrides = new Dictionary<string, string?>
            {
                ["TokenBroker:Limits:MaxRequestBodyBytes"] = "100",
                ["TokenBroker:Limits:MaxTokenBytes"] = "100",
                ["TokenBroker:Limits:MaxFormFields"] = "1000",
                ["TokenBroker:Limits:MaxParameterLength"] = "1",
                ["TokenBroker:Limits:MaxAudiences"] = "0",
                ["TokenBroker:Limits:MaxClaims"] = "1",
                ["TokenBroker:Limits:MaxJsonDepth"] = "100",
            },
        });
        if (built.App is not null)
        {
            await built.App.DisposeAsync();
        }

        Assert.That(built.App, Is.Null);
        foreach (var key in new[] { "MaxRequestBodyBytes", "MaxTokenBytes", "MaxFormFields", "MaxParameterLength", "MaxAudiences", "MaxClaims", "MaxJsonDepth" })
        {
            Assert.That(built.Errors, Has.Some.Contains("Limits:" + key + " must be between"), key);
        }
    }

    [Test]
    public async Task TokenLimitAboveBodyLimit_IsAnError()
    {
        var built = BrokerApp.Build(new BrokerAppOptions
        {
            MinimumLogLevel = LogLevel.Warning,
            Overrides = new Dictionary<string, string?>
            {
                ["TokenBroker:Limits:MaxRequestBodyBytes"] = "4096",
                ["TokenBroker:Limits:MaxTokenBytes"] = "8192",
            },
        });
        if (built.App is not null)
        {
            await built.App.DisposeAsync();
        }

        Assert.That(built.Errors, Has.Some.Contains("Limits:MaxTokenBytes must not exceed Limits:MaxRequestBodyBytes"));
    }
}
