using System.Net;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Exchange;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Exchange;

[TestFixture]
public sealed class ExchangeHappyPathTests
{
    private BrokerHarness _broker = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _broker = await BrokerHarness.StartAsync();

    [OneTimeTearDown]
    public async Task StopAsync() => await _broker.DisposeAsync();

    /// <summary>An independent verifier, as a cloud IAM would be: discovery + JWKS through IdentityModel.</summary>
    private async Task<TokenValidationResult> VerifyAsync(string token, string audience, string type = "at+jwt")
    {
        var manager = new ConfigurationManager<OpenIdConnectConfiguration>(
            _broker.Url + "/.well-known/openid-configuration",
            new OpenIdConnectConfigurationRetriever(),
            new HttpDocumentRetriever { RequireHttps = false });
        var configuration = await manager.GetConfigurationAsync(CancellationToken.None);
        return await new JsonWebTokenHandler().ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = configuration.Issuer,
            ValidAudience = audience,
            IssuerSigningKeys = configuration.SigningKeys,
            ValidTypes = [type],
            ValidAlgorithms = ["ES256"],
            RequireSignedTokens = true,
            ClockSkew = TimeSpan.Zero,
        });
    }

    [Test]
    public async Task ExchangeResponses_GrantedAndRefused_AreSentWithContentLengthNotChunked()
    {
        foreach (var (token, status) in new[] { (_broker.GitHubToken(), HttpStatusCode.OK), ("not-a-token", HttpStatusCode.BadRequest) })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/token")
            {
                Content = new FormUrlEncodedContent(BrokerHarness.ExchangeForm(token, "https://deploy.internal/payments")),
            };
            using var response = await _broker.Client.SendAsync(request);
            var body = await response.Content.ReadAsByteArrayAsync();

            Assert.That(response.StatusCode, Is.EqualTo(status));
            Assert.That(response.Headers.TransferEncodingChunked, Is.Not.True);
            Assert.That(response.Content.Headers.ContentLength, Is.EqualTo(body.Length));
            Assert.That(response.Content.Headers.ContentType!.MediaType, Is.EqualTo("application/json"));
        }
    }

    [TestCase("GET")]
    [TestCase("HEAD")]
    public async Task TokenEndpoint_WithAnotherMethod_AnswersTB1001WithContentLength(string method)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), "/token");
        using var response = await _broker.Client.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.MethodNotAllowed));
        Assert.That(response.Headers.TransferEncodingChunked, Is.Not.True);
        Assert.That(response.Content.Headers.ContentLength, Is.GreaterThan(0));
        if (method == "GET")
        {
            Assert.That(body, Does.Contain("\"error_id\":\"TB1001\""));
            Assert.That(response.Content.Headers.ContentLength, Is.EqualTo(System.Text.Encoding.UTF8.GetByteCount(body)));
        }
        else
        {
            Assert.That(body, Is.Empty, "a HEAD answer has headers only");
        }
    }

    [Test]
    public async Task Exchange_OfGitHubPushToMain_IssuesTokenVerifiableThroughDiscovery()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken(), "https://deploy.internal/payments");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        Assert.That(response.Body["token_type"]!.GetValue<string>(), Is.EqualTo("Bearer"));
        Assert.That(response.Body["issued_token_type"]!.GetValue<string>(), Is.EqualTo(TokenTypes.AccessToken));
        Assert.That(response.Body["expires_in"]!.GetValue<int>(), Is.EqualTo(600));
        Assert.That(response.Body["scope"]!.GetValue<string>(), Is.EqualTo("deploy:payments"), "scope is returned when the request named none");
        Assert.That(response.Body.ContainsKey("refresh_token"), Is.False);
        Assert.That(response.Headers.CacheControl!.NoStore, Is.True);
        Assert.That(response.Headers.Pragma.ToString(), Is.EqualTo("no-cache"));

        var verified = await VerifyAsync(response.AccessToken!, "https://deploy.internal/payments");
        Assert.That(verified.IsValid, Is.True, verified.Exception?.Message);

        var claims = response.Claims();
        Assert.That(claims["iss"]!.GetValue<string>(), Is.EqualTo(_broker.Url));
        Assert.That(claims["sub"]!.GetValue<string>(), Is.EqualTo("github:octo-org/payments:production"));
        Assert.That(claims["aud"]!.GetValue<string>(), Is.EqualTo("https://deploy.internal/payments"));
        Assert.That(claims["rule"]!.GetValue<string>(), Is.EqualTo("payments-deploy-prod"));
        Assert.That(claims["repo"]!.GetValue<string>(), Is.EqualTo("octo-org/payments"));
        Assert.That(claims["repo_id"]!.GetValue<string>(), Is.EqualTo("900101"));
        Assert.That(claims["ref"]!.GetValue<string>(), Is.EqualTo("refs/heads/main"));
        Assert.That(claims["branch"]!.GetValue<string>(), Is.EqualTo("main"));
        Assert.That(claims["environment"]!.GetValue<string>(), Is.EqualTo("production"));
        Assert.That(claims["stage"]!.GetValue<string>(), Is.EqualTo("deploy"));
        Assert.That(claims["provider"]!.GetValue<string>(), Is.EqualTo("github"));
        Assert.That(claims["run_id"]!.GetValue<string>(), Is.EqualTo("7000123456"));
        Assert.That(claims["client_id"]!.GetValue<string>(), Is.EqualTo("github:octo-org/payments"));
        Assert.That(claims["scope"]!.GetValue<string>(), Is.EqualTo("deploy:payments"));
        Assert.That(claims["exp"]!.GetValue<long>() - claims["iat"]!.GetValue<long>(), Is.EqualTo(600));
        Assert.That(claims["https://aws.amazon.com/tags"]!["principal_tags"]!["repo"]![0]!.GetValue<string>(), Is.EqualTo("octo-org/payments"));
        Assert.That(JwtParts.Header(response.AccessToken!)["kid"], Is.Not.Null);
    }

    [Test]
    public async Task Exchange_NeverCopiesJobTokenClaimsWholesale()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken(), "https://deploy.internal/payments");
        var claims = response.Claims();

        foreach (var raw in new[] { "actor", "actor_id", "sha", "workflow", "job_workflow_ref", "event_name", "repository_owner_id", "runner_environment" })
        {
            Assert.That(claims.ContainsKey(raw), Is.False, $"job-token claim '{raw}' leaked into the issued token");
        }
    }

    [Test]
    public async Task Exchange_OfGitLabProtectedBranch_IssuesTokenForStagingRule()
    {
        var response = await _broker.ExchangeAsync(_broker.GitLabToken(), "https://iac.internal/state");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        var verified = await VerifyAsync(response.AccessToken!, "https://iac.internal/state");
        Assert.That(verified.IsValid, Is.True, verified.Exception?.Message);
        var claims = response.Claims();
        Assert.That(claims["sub"]!.GetValue<string>(), Is.EqualTo("gitlab:platform/infra:staging"));
        Assert.That(claims["rule"]!.GetValue<string>(), Is.EqualTo("infra-staging-plan"));
        Assert.That(claims["repo_id"]!.GetValue<string>(), Is.EqualTo("4242"));
        Assert.That(claims["ref"]!.GetValue<string>(), Is.EqualTo("refs/heads/main"));
        Assert.That(claims["branch"]!.GetValue<string>(), Is.EqualTo("main"));
        Assert.That(claims["run_id"]!.GetValue<string>(), Is.EqualTo("993001"));
        Assert.That(claims["provider"]!.GetValue<string>(), Is.EqualTo("gitlab"));
    }

    [Test]
    public async Task Exchange_RequestingPlainJwt_IssuesTypJwtWithTokenTypeNA()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "sts.amazonaws.com");
        form.Add(new("requested_token_type", TokenTypes.Jwt));

        var response = await _broker.PostFormAsync(form);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        Assert.That(response.Body["token_type"]!.GetValue<string>(), Is.EqualTo("N_A"));
        Assert.That(response.Body["issued_token_type"]!.GetValue<string>(), Is.EqualTo(TokenTypes.Jwt));
        Assert.That(JwtParts.Header(response.AccessToken!)["typ"]!.GetValue<string>(), Is.EqualTo("JWT"));
        var verified = await VerifyAsync(response.AccessToken!, "sts.amazonaws.com", "JWT");
        Assert.That(verified.IsValid, Is.True, verified.Exception?.Message);
    }

    [Test]
    public async Task Exchange_WithRepeatedAudiences_GrantsExactlyThose()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken(), "sts.amazonaws.com", "https://deploy.internal/payments");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        var aud = response.Claims()["aud"]!.AsArray().Select(a => a!.GetValue<string>());
        Assert.That(aud, Is.EqualTo(new[] { "sts.amazonaws.com", "https://deploy.internal/payments" }));
    }

    [Test]
    public async Task Exchange_WithResourceParameter_TreatsItAsTarget()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken());
        form.Add(new("resource", "https://deploy.internal/payments"));

        var response = await _broker.PostFormAsync(form);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        Assert.That(response.Claims()["aud"]!.GetValue<string>(), Is.EqualTo("https://deploy.internal/payments"));
    }

    [Test]
    public async Task Exchange_WithRequestedScope_OmitsScopeFromResponseWhenUnchanged()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "https://deploy.internal/payments");
        form.Add(new("scope", "deploy:payments"));

        var response = await _broker.PostFormAsync(form);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        Assert.That(response.Body.ContainsKey("scope"), Is.False);
        Assert.That(response.Claims()["scope"]!.GetValue<string>(), Is.EqualTo("deploy:payments"));
    }

    [Test]
    public async Task Exchange_WithShorterRequestedLifetime_IssuesShorterToken()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "https://deploy.internal/payments");
        form.Add(new("requested_lifetime", "120"));

        var response = await _broker.PostFormAsync(form);

        Assert.That(response.Body["expires_in"]!.GetValue<int>(), Is.EqualTo(120));
        var claims = response.Claims();
        Assert.That(claims["exp"]!.GetValue<long>() - claims["iat"]!.GetValue<long>(), Is.EqualTo(120));
    }

    [Test]
    public async Task Exchange_WithUnknownParameters_IgnoresThem()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "https://deploy.internal/payments");
        form.Add(new("x_custom", "1"));
        form.Add(new("x_custom", "2"));

        var response = await _broker.PostFormAsync(form);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
    }

    [Test]
    public async Task Exchange_Success_IsAuditedWithHashesAndNoToken()
    {
        var jobToken = _broker.GitHubToken();
        var response = await _broker.ExchangeAsync(jobToken, "https://deploy.internal/payments");

        var audit = _broker.AuditFor(response);
        Assert.That(audit, Is.Not.Null);
        Assert.That(audit!.Outcome, Is.EqualTo("issued"));
        Assert.That(audit.Rule, Is.EqualTo("payments-deploy-prod"));
        Assert.That(audit.RepositoryId, Is.EqualTo("900101"));
        Assert.That(audit.IssuedJti, Is.EqualTo(response.Claims()["jti"]!.GetValue<string>()));
        Assert.That(audit.JobTokenSha256, Has.Length.EqualTo(64));
        var json = System.Text.Json.JsonSerializer.Serialize(audit);
        Assert.That(json, Does.Not.Contain(jobToken.Split('.')[2]));
        Assert.That(json, Does.Not.Contain(response.AccessToken!.Split('.')[2]));
    }
}
