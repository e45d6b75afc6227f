using System.Net;
using System.Text.Json.Nodes;
using TokenBroker.Demo;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Providers;

/// <summary>Key retrieval from a real (fake) issuer over HTTP: refresh on unknown kid, rate limiting, outages.</summary>
[TestFixture]
public sealed class ProviderKeyTests
{
    [Test]
    public async Task FloodOfRandomKids_FetchesTheJwksAtMostOncePerInterval()
    {
        await using var broker = await BrokerHarness.StartAsync();
        var warm = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        Assert.That(warm.Status, Is.EqualTo(HttpStatusCode.OK), warm.Raw);
        var jwksBefore = broker.Issuer.JwksHits;

        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(i =>
        {
            var header = new JsonObject { ["typ"] = "JWT", ["alg"] = "RS256", ["kid"] = "random-" + i };
            var token = broker.Issuer.SignRaw("github", header, JwtParts.Payload(broker.GitHubToken()));
            return broker.ExchangeAsync(token, "https://deploy.internal/payments");
        }));

        Assert.That(responses.Select(r => r.ErrorId), Is.All.EqualTo("TB1109"));
        Assert.That(broker.Issuer.JwksHits - jwksBefore, Is.LessThanOrEqualTo(1), "one refresh per interval, whatever the number of unknown kids");
    }

    [Test]
    public async Task ProviderKeyRotation_IsPickedUpByRefreshOnUnknownKid()
    {
        await using var broker = await BrokerHarness.StartAsync();
        var before = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        Assert.That(before.Status, Is.EqualTo(HttpStatusCode.OK), before.Raw);

        broker.Issuer.RotateKey("github");
        var after = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");

        Assert.That(after.Status, Is.EqualTo(HttpStatusCode.OK), after.Raw);
    }

    [Test]
    public async Task ColdCacheWithProviderDown_Answers503WithRetryAfterAndNoToken()
    {
        await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        issuer.Down = true;
        await using var broker = await BrokerHarness.StartAsync(
            new Dictionary<string, string?>
            {
                ["TokenBroker:Providers:github:FetchRetries"] = "1",
                ["TokenBroker:Providers:github:FetchTimeout"] = "00:00:02",
            },
            issuer);

        var response = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), response.Raw);
        Assert.That(response.Error, Is.EqualTo("temporarily_unavailable"));
        Assert.That(response.ErrorId, Is.EqualTo("TB1301"));
        Assert.That(response.Headers.RetryAfter, Is.Not.Null);
        Assert.That(response.AccessToken, Is.Null);
        Assert.That(broker.Issuer.DiscoveryHitsFor("github"), Is.InRange(2, 4), "an attempt and one jittered retry, from warm-up and at most once more for the request; never a retry storm");
    }

    [Test]
    public async Task ProviderDownAfterWarmUp_ServesLastKnownGoodKeys()
    {
        await using var broker = await BrokerHarness.StartAsync();
        var warm = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        Assert.That(warm.Status, Is.EqualTo(HttpStatusCode.OK), warm.Raw);

        broker.Issuer.Down = true;
        var during = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");

        Assert.That(during.Status, Is.EqualTo(HttpStatusCode.OK), during.Raw);
    }

    [Test]
    public async Task NewKidDuringAnOutage_Answers503NotABadToken()
    {
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?> { ["TokenBroker:Providers:github:FetchRetries"] = "0" });
        var warm = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        Assert.That(warm.Status, Is.EqualTo(HttpStatusCode.OK), warm.Raw);

        broker.Issuer.RotateKey("github");
        broker.Issuer.Down = true;
        var response = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), response.Raw);
        Assert.That(response.ErrorId, Is.EqualTo("TB1301"));
    }

    [Test]
    public async Task ProviderUnreachable_Answers503()
    {
        var port = FakeCiIssuer.FreePort();
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?>
        {
            ["TokenBroker:Providers:gitlab:Issuer"] = $"http://127.0.0.1:{port}/gitlab",
            ["TokenBroker:Providers:gitlab:FetchRetries"] = "0",
        });
        var token = broker.GitLabToken(tweak: p => p["iss"] = $"http://127.0.0.1:{port}/gitlab");

        var response = await broker.ExchangeAsync(token, "https://iac.internal/state");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), response.Raw);
        Assert.That(response.ErrorId, Is.EqualTo("TB1301"));
    }

    [Test]
    public async Task DiscoveryNamingAnotherIssuer_IsNotTrusted()
    {
        // The provider is configured with a metadata address whose document names a different issuer.
        await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        await using var broker = await BrokerHarness.StartAsync(
            new Dictionary<string, string?> { ["TokenBroker:Providers:gitlab:MetadataAddress"] = issuer.IssuerUrl("github") + "/.well-known/openid-configuration" },
            issuer);

        var response = await broker.ExchangeAsync(broker.GitLabToken(), "https://iac.internal/state");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), response.Raw);
        Assert.That(broker.AuditFor(response)!.Detail, Does.Contain("names issuer"));
    }
}
