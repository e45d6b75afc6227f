using System.Net;
using System.Text.Json.Nodes;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Operations;

/// <summary>X-Forwarded-* is believed only from configured proxies; the issuer never comes from request headers.</summary>
[TestFixture]
public sealed class TrustedProxyTests
{
    private static async Task<ExchangeResponse> JunkExchangeAsync(BrokerHarness broker, string? forwardedFor, string? forwardedProto = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/token") { Content = new FormUrlEncodedContent(BrokerHarness.ExchangeForm("not-a-jwt", "https://deploy.internal/payments")) };
        if (forwardedFor is not null)
        {
            request.Headers.Add("X-Forwarded-For", forwardedFor);
        }

        if (forwardedProto is not null)
        {
            request.Headers.Add("X-Forwarded-Proto", forwardedProto);
        }

        return await broker.SendAsync(request);
    }

    private static IEnumerable<TestCaseData> UntrustedPeers()
    {
        yield return new TestCaseData(new Dictionary<string, string?>()).SetName("ForwardedFor_WithNoProxyConfigured_IsIgnored");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Proxy:KnownNetworks:0"] = "10.0.0.0/8" }).SetName("ForwardedFor_FromAPeerOutsideTheKnownNetworks_IsIgnored");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Proxy:KnownProxies:0"] = "192.0.2.1" }).SetName("ForwardedFor_FromAPeerThatIsNotAKnownProxy_IsIgnored");
    }

    [TestCaseSource(nameof(UntrustedPeers))]
    public async Task ForwardedFor_FromAnUntrustedPeer_LeavesTheSocketAddress(Dictionary<string, string?> settings)
    {
        await using var broker = await BrokerHarness.StartAsync(settings);

        var response = await JunkExchangeAsync(broker, "203.0.113.7");

        Assert.That(broker.AuditFor(response)!.ClientIp, Is.EqualTo("127.0.0.1"));
    }

    private static IEnumerable<TestCaseData> TrustedLoopback()
    {
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Proxy:KnownProxies:0"] = "127.0.0.1" }).SetName("ForwardedFor_FromAKnownProxy_IsTheClientAddress");
        yield return new TestCaseData(new Dictionary<string, string?> { ["TokenBroker:Proxy:KnownNetworks:0"] = "127.0.0.0/8" }).SetName("ForwardedFor_FromAKnownNetwork_IsTheClientAddress");
    }

    [TestCaseSource(nameof(TrustedLoopback))]
    public async Task ForwardedFor_FromATrustedPeer_IsTheClientAddress(Dictionary<string, string?> settings)
    {
        await using var broker = await BrokerHarness.StartAsync(settings);

        var response = await JunkExchangeAsync(broker, "198.51.100.9, 203.0.113.7");

        Assert.That(broker.AuditFor(response)!.ClientIp, Is.EqualTo("203.0.113.7"), "ForwardLimit 1: only the hop the proxy itself saw");
    }

    [Test]
    public async Task ForwardedFor_WithForwardLimit2AndBothHopsTrusted_UnwindsTwoHops()
    {
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?>
        {
            ["TokenBroker:Proxy:KnownProxies:0"] = "127.0.0.1",
            ["TokenBroker:Proxy:KnownNetworks:0"] = "10.0.0.0/8",
            ["TokenBroker:Proxy:ForwardLimit"] = "2",
        });

        var twoTrusted = await JunkExchangeAsync(broker, "198.51.100.9, 10.1.2.3");
        var secondUntrusted = await JunkExchangeAsync(broker, "198.51.100.9, 203.0.113.7");

        Assert.That(broker.AuditFor(twoTrusted)!.ClientIp, Is.EqualTo("198.51.100.9"));
        Assert.That(broker.AuditFor(secondUntrusted)!.ClientIp, Is.EqualTo("203.0.113.7"), "an untrusted hop ends the unwinding");
    }

    [Test]
    public async Task RateLimit_BehindATrustedProxy_IsPerForwardedClient()
    {
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?>
        {
            ["TokenBroker:Proxy:KnownProxies:0"] = "127.0.0.1",
            ["TokenBroker:RateLimits:Token:Burst"] = "2",
            ["TokenBroker:RateLimits:Token:PerMinute"] = "1",
        });

        await JunkExchangeAsync(broker, "203.0.113.7");
        await JunkExchangeAsync(broker, "203.0.113.7");
        var limited = await JunkExchangeAsync(broker, "203.0.113.7");
        var other = await JunkExchangeAsync(broker, "203.0.113.8");

        Assert.That(limited.ErrorId, Is.EqualTo("TB1501"));
        Assert.That(broker.AuditFor(limited)!.Detail, Does.Contain("203.0.113.7"));
        Assert.That(other.ErrorId, Is.EqualTo("TB1102"), "another client behind the same proxy has its own budget");
    }

    [Test]
    public async Task Discovery_WithForgedHostAndForwardedHeaders_KeepsTheConfiguredIssuer()
    {
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?> { ["TokenBroker:Proxy:KnownProxies:0"] = "127.0.0.1" });
        using var request = new HttpRequestMessage(HttpMethod.Get, "/.well-known/openid-configuration");
        request.Headers.Host = "evil.example";
        request.Headers.Add("X-Forwarded-Host", "evil.example");
        request.Headers.Add("X-Forwarded-Proto", "https");
        request.Headers.Add("X-Forwarded-Prefix", "/evil");
        request.Headers.Add("X-Forwarded-For", "203.0.113.7");

        using var response = await broker.Client.SendAsync(request);
        var metadata = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(metadata["issuer"]!.GetValue<string>(), Is.EqualTo(broker.BrokerIssuer));
        Assert.That(metadata.Where(p => p.Value is JsonValue).Select(p => p.Value!.ToString()), Has.None.Contain("evil"));
        Assert.That(metadata["token_endpoint"]!.GetValue<string>(), Is.EqualTo(broker.BrokerIssuer + "/token"));
    }

    [Test]
    public async Task ForwardedProto_FromATrustedProxy_MarksTheRequestHttps_SoItGetsHsts()
    {
        await using var trusted = await BrokerHarness.StartAsync(new Dictionary<string, string?> { ["TokenBroker:Proxy:KnownProxies:0"] = "127.0.0.1" });
        await using var untrusted = await BrokerHarness.StartAsync(sharedIssuer: trusted.Issuer);

        var viaProxy = await JunkExchangeAsync(trusted, "203.0.113.7", "https");
        var forged = await JunkExchangeAsync(untrusted, "203.0.113.7", "https");

        Assert.That(viaProxy.Headers.Contains("Strict-Transport-Security"), Is.True);
        Assert.That(forged.Headers.Contains("Strict-Transport-Security"), Is.False, "an untrusted X-Forwarded-Proto changes nothing");
    }
}

/// <summary>Security headers on every class of endpoint.</summary>
[TestFixture]
public sealed class SecurityHeaderTests
{
    private BrokerHarness _broker = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _broker = await BrokerHarness.StartAsync(new Dictionary<string, string?>
    {
        ["TokenBroker:RateLimits:Admin:Burst"] = "1",
        ["TokenBroker:RateLimits:Admin:PerMinute"] = "1",
    });

    [OneTimeTearDown]
    public async Task StopAsync() => await _broker.DisposeAsync();

    private static IEnumerable<TestCaseData> Endpoints()
    {
        static TestCaseData Case(string name, HttpMethod method, string path, bool noStore, bool form = false) =>
            new TestCaseData(method, path, noStore, form).SetName($"Headers_On{name}_AreSet");
        yield return Case("TokenError", HttpMethod.Post, "/token", noStore: true, form: true);
        yield return Case("TokenWrongMethod", HttpMethod.Get, "/token", noStore: true);
        yield return Case("Revoke", HttpMethod.Post, "/revoke", noStore: true, form: true);
        yield return Case("IntrospectUnauthenticated", HttpMethod.Post, "/introspect", noStore: true, form: true);
        yield return Case("AdminUnauthenticated", HttpMethod.Get, "/admin/blocks", noStore: true);
        yield return Case("Discovery", HttpMethod.Get, "/.well-known/openid-configuration", noStore: false);
        yield return Case("OAuthMetadata", HttpMethod.Get, "/.well-known/oauth-authorization-server", noStore: false);
        yield return Case("Jwks", HttpMethod.Get, "/.well-known/jwks.json", noStore: false);
        yield return Case("Healthz", HttpMethod.Get, "/healthz", noStore: true);
        yield return Case("Readyz", HttpMethod.Get, "/readyz", noStore: true);
        yield return Case("UnknownPath", HttpMethod.Get, "/nothing-here", noStore: true);
    }

    [TestCaseSource(nameof(Endpoints))]
    public async Task Headers_AreSetOnEveryEndpoint(HttpMethod method, string path, bool noStore, bool form)
    {
        using var request = new HttpRequestMessage(method, path);
        if (form)
        {
            request.Content = new FormUrlEncodedContent([new("token", "junk")]);
        }

        using var response = await _broker.Client.SendAsync(request);

        AssertCommonHeaders(response);
        if (noStore)
        {
            Assert.That(response.Headers.CacheControl?.NoStore, Is.True, "Cache-Control: no-store");
        }
        else
        {
            Assert.That(response.Headers.CacheControl?.Public, Is.True, "discovery and JWKS keep their cache headers");
            Assert.That(response.Headers.CacheControl?.MaxAge, Is.GreaterThan(TimeSpan.Zero));
        }
    }

    [Test]
    public async Task Headers_OnTokenSuccessAndRateLimitRefusal_AreSet()
    {
        var issued = await _broker.ExchangeAsync(_broker.GitHubToken(), "https://deploy.internal/payments");
        Assert.That(issued.Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(issued.Headers.Pragma.ToString(), Is.EqualTo("no-cache"));
        Assert.That(issued.Headers.CacheControl?.NoStore, Is.True);

        await _broker.Client.GetAsync(new Uri("/admin/blocks", UriKind.Relative));
        using var limited = await _broker.Client.GetAsync(new Uri("/admin/blocks", UriKind.Relative));
        Assert.That(limited.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
        AssertCommonHeaders(limited);
        Assert.That(limited.Headers.Pragma.ToString(), Is.EqualTo("no-cache"));
    }

    private static void AssertCommonHeaders(HttpResponseMessage response)
    {
        Assert.That(response.Headers.GetValues("X-Content-Type-Options"), Is.EqualTo(new[] { "nosniff" }));
        Assert.That(response.Headers.GetValues("X-Frame-Options"), Is.EqualTo(new[] { "DENY" }));
        Assert.That(response.Headers.GetValues("Referrer-Policy"), Is.EqualTo(new[] { "no-referrer" }));
        Assert.That(response.Headers.GetValues("Content-Security-Policy"), Is.EqualTo(new[] { "default-src 'none'; frame-ancestors 'none'" }));
        Assert.That(response.Headers.Contains("Server"), Is.False);
        Assert.That(response.Headers.Contains("Strict-Transport-Security"), Is.False, "never on plain http");
    }
}
