using System.Net;
using System.Text.Json.Nodes;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Discovery;

[TestFixture]
public sealed class DiscoveryTests
{
    private BrokerHarness _broker = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _broker = await BrokerHarness.StartAsync();

    [OneTimeTearDown]
    public async Task StopAsync() => await _broker.DisposeAsync();

    private async Task<(HttpResponseMessage Response, JsonObject Body)> GetAsync(string path)
    {
        var response = await _broker.Client.GetAsync(new Uri(path, UriKind.Relative));
        return (response, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
    }

    [TestCase("/.well-known/openid-configuration")]
    [TestCase("/.well-known/oauth-authorization-server")]
    public async Task Metadata_HasTheFieldsCloudVerifiersRequire(string path)
    {
        var (response, body) = await GetAsync(path);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(body["issuer"]!.GetValue<string>(), Is.EqualTo(_broker.Url));
        Assert.That(body["jwks_uri"]!.GetValue<string>(), Is.EqualTo(_broker.Url + "/.well-known/jwks.json"));
        Assert.That(body["token_endpoint"]!.GetValue<string>(), Is.EqualTo(_broker.Url + "/token"));
        Assert.That(body["grant_types_supported"]!.AsArray().Select(n => n!.GetValue<string>()), Does.Contain("urn:ietf:params:oauth:grant-type:token-exchange"));
        Assert.That(body["response_types_supported"]!.AsArray(), Is.Not.Empty);
        Assert.That(body["subject_types_supported"]!.AsArray().Select(n => n!.GetValue<string>()), Does.Contain("public"));
        Assert.That(body["id_token_signing_alg_values_supported"]!.AsArray().Select(n => n!.GetValue<string>()), Does.Contain("ES256"));
    }

    [Test]
    public async Task Issuer_IsByteIdenticalToIssuedTokenIss()
    {
        var (_, body) = await GetAsync("/.well-known/openid-configuration");
        var exchange = await _broker.ExchangeAsync(_broker.GitHubToken(), "sts.amazonaws.com");

        Assert.That(exchange.Claims()["iss"]!.GetValue<string>(), Is.EqualTo(body["issuer"]!.GetValue<string>()));
    }

    [Test]
    public async Task Jwks_PublishesPublicKeysOnly_WithKidAlgAndUse()
    {
        var (response, body) = await GetAsync("/.well-known/jwks.json");

        Assert.That(response.Headers.CacheControl!.MaxAge, Is.Not.Null.And.LessThanOrEqualTo(TimeSpan.FromMinutes(10)));
        var keys = body["keys"]!.AsArray();
        Assert.That(keys, Has.Count.GreaterThanOrEqualTo(1));
        foreach (var key in keys.Select(k => k!.AsObject()))
        {
            Assert.That(key["kid"], Is.Not.Null);
            Assert.That(key["alg"]!.GetValue<string>(), Is.EqualTo("ES256"));
            Assert.That(key["use"]!.GetValue<string>(), Is.EqualTo("sig"));
            foreach (var secret in new[] { "d", "p", "q", "dp", "dq", "qi", "k" })
            {
                Assert.That(key.ContainsKey(secret), Is.False, $"private member '{secret}' published");
            }
        }
    }

    [Test]
    public async Task IssuedTokenKid_IsPublishedInTheJwks()
    {
        var (_, body) = await GetAsync("/.well-known/jwks.json");
        var exchange = await _broker.ExchangeAsync(_broker.GitHubToken(), "sts.amazonaws.com");

        var kid = JwtParts.Header(exchange.AccessToken!)["kid"]!.GetValue<string>();
        Assert.That(body["keys"]!.AsArray().Select(k => k!["kid"]!.GetValue<string>()), Does.Contain(kid));
    }

    [Test]
    public async Task Health_AndReadiness_AreUp()
    {
        Assert.That((await _broker.Client.GetAsync(new Uri("/healthz", UriKind.Relative))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await _broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }
}
