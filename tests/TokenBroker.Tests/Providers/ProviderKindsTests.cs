using System.Net;
using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Demo;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Providers;

/// <summary>Generic OIDC providers, RS256 file keys and document size caps, end to end over HTTP.</summary>
[TestFixture]
public sealed class ProviderKindsTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("tb-kinds-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    [Test]
    public async Task GenericOidcProvider_WithDeclaredClaims_IsExchanged()
    {
        var rules = Path.Combine(_dir, "rules.yaml");
        File.WriteAllText(rules, """
            rules:
              - id: buildkite-deploy
                provider: ci
                when:
                  repository_id: "77"
                  pipeline_slug: deploy
                grant:
                  audiences: [https://deploy.internal]
                  stage: deploy
                  ttl: 5m
                  subject: "ci:{repository}:{pipeline_slug}"
            """);
        await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab", "ci");
        await using var broker = await BrokerHarness.StartAsync(
            new Dictionary<string, string?>
            {
                ["TokenBroker:Rules:Paths:0"] = rules,
                ["TokenBroker:Providers:ci:Kind"] = "oidc",
                ["TokenBroker:Providers:ci:Issuer"] = issuer.IssuerUrl("ci"),
                ["TokenBroker:Providers:ci:AllowHttp"] = "true",
                ["TokenBroker:Providers:ci:Claims:0"] = "pipeline_slug",
                ["TokenBroker:Providers:ci:ClaimMappings:repository"] = "project",
                ["TokenBroker:Providers:ci:ClaimMappings:repository_id"] = "project_id",
            },
            issuer);
        var claims = new Dictionary<string, System.Text.Json.Nodes.JsonNode?>
        {
            ["sub"] = "project:acme/app",
            ["project"] = "acme/app",
            ["project_id"] = "77",
            ["pipeline_slug"] = "deploy",
        };

        var ok = await broker.ExchangeAsync(issuer.Mint("ci", claims, broker.Audience), "https://deploy.internal");
        claims["pipeline_slug"] = "test";
        var refused = await broker.ExchangeAsync(issuer.Mint("ci", claims, broker.Audience), "https://deploy.internal");

        Assert.That(ok.Status, Is.EqualTo(HttpStatusCode.OK), ok.Raw);
        Assert.That(ok.Claims()["sub"]!.GetValue<string>(), Is.EqualTo("ci:acme/app:deploy"));
        Assert.That(ok.Claims()["repo_id"]!.GetValue<string>(), Is.EqualTo("77"));
        Assert.That(refused.ErrorId, Is.EqualTo("TB1201"));
    }

    [Test]
    public async Task Rs256FileKey_SignsTokensThatVerifyWithThePublishedJwks()
    {
        using var rsa = RSA.Create(2048);
        var keyFile = Path.Combine(_dir, "signing.pem");
        File.WriteAllText(keyFile, rsa.ExportPkcs8PrivateKeyPem());
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?>
        {
            ["TokenBroker:Signing:Keys:0:Source"] = "file",
            ["TokenBroker:Signing:Keys:0:Path"] = keyFile,
            ["TokenBroker:Signing:Keys:0:Algorithm"] = "RS256",
            ["TokenBroker:Signing:Keys:0:KeyId"] = "rsa-2026",
        });

        var response = await broker.ExchangeAsync(broker.GitHubToken(), "sts.amazonaws.com");
        var jwks = new JsonWebKeySet(await broker.Client.GetStringAsync(new Uri("/.well-known/jwks.json", UriKind.Relative)));
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(response.AccessToken!, new TokenValidationParameters
        {
            ValidIssuer = broker.Url,
            ValidAudience = "sts.amazonaws.com",
            IssuerSigningKeys = jwks.GetSigningKeys(),
            ValidAlgorithms = ["RS256"],
            ValidTypes = ["at+jwt"],
        });

        Assert.That(result.IsValid, Is.True, result.Exception?.Message);
        Assert.That(JwtParts.Header(response.AccessToken!)["kid"]!.GetValue<string>(), Is.EqualTo("rsa-2026"));
        Assert.That(jwks.Keys.Single().Alg, Is.EqualTo("RS256"));
    }

    [Test]
    public async Task JwksLargerThanTheCap_IsNotAccepted()
    {
        // Oversized before the broker starts: its start-up warm-up must not cache the keys either.
        await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        issuer.JwksPadding = 4096;
        await using var broker = await BrokerHarness.StartAsync(
            new Dictionary<string, string?>
            {
                ["TokenBroker:Providers:github:MaxDocumentBytes"] = "1024",
                ["TokenBroker:Providers:github:FetchRetries"] = "0",
            },
            issuer);

        var response = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), response.Raw);
        Assert.That(response.ErrorId, Is.EqualTo("TB1301"));
        Assert.That(broker.AuditFor(response)!.Detail, Does.Contain("1024"));
    }
}
