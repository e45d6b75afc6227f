using System.Net;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Client;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Client;

/// <summary>The .NET client library against a real broker on loopback.</summary>
[TestFixture]
public sealed class TokenBrokerClientTests
{
    private BrokerHarness _broker = null!;
    private HttpClient _http = null!;
    private TokenBrokerClient _client = null!;
    private TokenBrokerVerifier _verifier = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _broker = await BrokerHarness.StartAsync();
        _http = new HttpClient();
        _client = new TokenBrokerClient(_http, new Uri(_broker.Url)) { TransientRetries = 0 };
        _verifier = new TokenBrokerVerifier(new Uri(_broker.Url), _http, requireHttps: false);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        _http.Dispose();
        await _broker.DisposeAsync();
    }

    [Test]
    public async Task Exchange_ThenVerify_YieldsTheJobContext()
    {
        var issued = await _client.ExchangeAsync(new TokenExchangeRequest
        {
            SubjectToken = _broker.GitHubToken(),
            Audiences = ["https://deploy.internal/payments"],
        });

        var verified = await _verifier.VerifyAsync(issued.AccessToken, "https://deploy.internal/payments");

        Assert.That(issued.TokenType, Is.EqualTo("Bearer"));
        Assert.That(issued.ExpiresIn, Is.EqualTo(TimeSpan.FromMinutes(10)));
        Assert.That(issued.ToString(), Does.Not.Contain(issued.AccessToken[..20]), "ToString never shows the token");
        Assert.That(verified.Rule, Is.EqualTo("payments-deploy-prod"));
        Assert.That(verified.RepositoryId, Is.EqualTo("900101"));
        Assert.That(verified.Subject, Is.EqualTo("github:octo-org/payments:production"));
        Assert.That(verified.Scopes, Is.EqualTo(new[] { "deploy:payments" }));
    }

    [Test]
    public async Task PlainJwt_VerifiesOnlyAsPlainJwt()
    {
        var issued = await _client.ExchangeAsync(new TokenExchangeRequest { SubjectToken = _broker.GitHubToken(), Audiences = ["sts.amazonaws.com"], PlainJwt = true });

        Assert.That(issued.TokenType, Is.EqualTo("N_A"));
        Assert.That((await _verifier.VerifyAsync(issued.AccessToken, "sts.amazonaws.com", plainJwt: true)).Provider, Is.EqualTo("github"));
        Assert.ThrowsAsync<SecurityTokenInvalidTypeException>(() => _verifier.VerifyAsync(issued.AccessToken, "sts.amazonaws.com"));
    }

    [Test]
    public async Task Verify_WithAnotherAudienceOrAlteredToken_Throws()
    {
        var issued = await _client.ExchangeAsync(new TokenExchangeRequest { SubjectToken = _broker.GitHubToken(), Audiences = ["https://deploy.internal/payments"] });
        var parts = issued.AccessToken.Split('.');
        var altered = parts[0] + "." + JwtParts.B64(JwtParts.Payload(issued.AccessToken).ToJsonString().Replace("production", "staging", StringComparison.Ordinal)) + "." + parts[2];

        Assert.ThrowsAsync<SecurityTokenInvalidAudienceException>(() => _verifier.VerifyAsync(issued.AccessToken, "sts.amazonaws.com"));
        Assert.ThrowsAsync<SecurityTokenInvalidSignatureException>(() => _verifier.VerifyAsync(altered, "https://deploy.internal/payments"));
    }

    [Test]
    public void Refusal_IsATypedErrorWithIdAndRequestId()
    {
        var e = Assert.ThrowsAsync<TokenBrokerException>(() => _client.ExchangeAsync(new TokenExchangeRequest
        {
            SubjectToken = _broker.GitHubToken("lookalike_repository"),
            Audiences = ["https://deploy.internal/payments"],
        }));

        Assert.That(e!.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(e.Error, Is.EqualTo("invalid_request"));
        Assert.That(e.ErrorId, Is.EqualTo("TB1201"));
        Assert.That(e.RequestId, Does.StartWith("req_"));
        Assert.That(e.IsTransient, Is.False);
    }

    [Test]
    public async Task Downscoping_ThroughTheClient_Narrows()
    {
        var parent = await _client.ExchangeAsync(new TokenExchangeRequest { SubjectToken = _broker.GitHubToken(), Audiences = ["sts.amazonaws.com", "https://deploy.internal/payments"] });

        var child = await _client.ExchangeAsync(new TokenExchangeRequest
        {
            SubjectToken = parent.AccessToken,
            SubjectTokenType = TokenBroker.Client.TokenTypes.AccessToken,
            Audiences = ["https://deploy.internal/payments"],
        });

        var verified = await _verifier.VerifyAsync(child.AccessToken, "https://deploy.internal/payments");
        Assert.That(verified.Claim("act"), Is.Not.Null);
    }

    [Test]
    public async Task GitHubActionsJobToken_IsRequestedLikeOnARunner()
    {
        Environment.SetEnvironmentVariable("ACTIONS_ID_TOKEN_REQUEST_URL", _broker.Issuer.IssuerUrl("github") + "/_apis/token?api-version=2.0");
        Environment.SetEnvironmentVariable("ACTIONS_ID_TOKEN_REQUEST_TOKEN", _broker.Issuer.RequestToken);
        try
        {
            var jobToken = await GitHubActionsJobToken.RequestAsync(_http, _broker.Audience);
            var issued = await _client.ExchangeAsync(new TokenExchangeRequest { SubjectToken = jobToken, Audiences = ["https://deploy.internal/payments"] });
            Assert.That(issued.AccessToken, Is.Not.Empty);
        }
        finally
        {
            Environment.SetEnvironmentVariable("ACTIONS_ID_TOKEN_REQUEST_URL", null);
            Environment.SetEnvironmentVariable("ACTIONS_ID_TOKEN_REQUEST_TOKEN", null);
        }
    }
}
