using System.Net;
using System.Text.Json.Nodes;
using TokenBroker.Exchange;
using TokenBroker.Tests.Infrastructure;
using TokenBroker.Tests.State;

namespace TokenBroker.Tests.Exchange;

/// <summary>Exchanging the broker's own access tokens for narrower ones, never broader.</summary>
[TestFixture]
public sealed class DownscopeTests
{
    private BrokerHarness _broker = null!;
    private readonly StateApi _api = StateApi.Create();

    [OneTimeSetUp]
    public async Task StartAsync() => _broker = await BrokerHarness.StartAsync(_api.Settings());

    [OneTimeTearDown]
    public async Task StopAsync() => await _broker.DisposeAsync();

    /// <summary>A broker token for both audiences of payments-deploy-prod.</summary>
    private async Task<string> ParentAsync()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken(), "sts.amazonaws.com", "https://deploy.internal/payments");
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        return response.AccessToken!;
    }

    private Task<ExchangeResponse> DownscopeAsync(string token, string[] audiences, string? scope = null, string? lifetime = null, string? requestedType = null)
    {
        var form = new List<KeyValuePair<string, string>>
        {
            new("grant_type", TokenTypes.TokenExchangeGrant),
            new("subject_token", token),
            new("subject_token_type", TokenTypes.AccessToken),
        };
        form.AddRange(audiences.Select(a => new KeyValuePair<string, string>("audience", a)));
        if (scope is not null)
        {
            form.Add(new("scope", scope));
        }

        if (lifetime is not null)
        {
            form.Add(new("requested_lifetime", lifetime));
        }

        if (requestedType is not null)
        {
            form.Add(new("requested_token_type", requestedType));
        }

        return _broker.PostFormAsync(form);
    }

    [Test]
    public async Task BrokerToken_DownscopedToOneAudience_IsNarrowerAndRecordsTheChain()
    {
        var parent = await ParentAsync();
        var parentClaims = JwtParts.Payload(parent);

        var response = await DownscopeAsync(parent, ["https://deploy.internal/payments"]);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        var claims = response.Claims();
        Assert.That(claims["aud"]!.GetValue<string>(), Is.EqualTo("https://deploy.internal/payments"));
        Assert.That(claims["sub"]!.GetValue<string>(), Is.EqualTo(parentClaims["sub"]!.GetValue<string>()));
        Assert.That(claims["scope"]!.GetValue<string>(), Is.EqualTo("deploy:payments"));
        Assert.That(claims["rule"]!.GetValue<string>(), Is.EqualTo("payments-deploy-prod"));
        Assert.That(claims["repo_id"]!.GetValue<string>(), Is.EqualTo("900101"));
        Assert.That(claims["exp"]!.GetValue<long>(), Is.LessThanOrEqualTo(parentClaims["exp"]!.GetValue<long>()));
        Assert.That(claims["jti"]!.GetValue<string>(), Is.Not.EqualTo(parentClaims["jti"]!.GetValue<string>()));
        Assert.That(claims["act"]!["jti"]!.GetValue<string>(), Is.EqualTo(parentClaims["jti"]!.GetValue<string>()));
        Assert.That(claims["act"]!["sub"]!.GetValue<string>(), Is.EqualTo(parentClaims["sub"]!.GetValue<string>()));
        Assert.That(claims["https://aws.amazon.com/tags"], Is.Not.Null, "rule-rendered claims carry over");
        Assert.That(JwtParts.Header(response.AccessToken!)["typ"]!.GetValue<string>(), Is.EqualTo("at+jwt"));
        Assert.That(_broker.AuditFor(response)!.ParentJti, Is.EqualTo(parentClaims["jti"]!.GetValue<string>()));
    }

    [Test]
    public async Task DownscopedToken_CanBeDownscopedAgain_NestingTheActChain()
    {
        var first = (await DownscopeAsync(await ParentAsync(), ["https://deploy.internal/payments"])).AccessToken!;

        var second = await DownscopeAsync(first, ["https://deploy.internal/payments"], lifetime: "60");

        Assert.That(second.Status, Is.EqualTo(HttpStatusCode.OK), second.Raw);
        var act = second.Claims()["act"]!;
        Assert.That(act["jti"]!.GetValue<string>(), Is.EqualTo(JwtParts.Payload(first)["jti"]!.GetValue<string>()));
        Assert.That(act["act"]!["jti"], Is.Not.Null, "the whole chain is kept");
        Assert.That(second.Body["expires_in"]!.GetValue<int>(), Is.EqualTo(60));
    }

    [Test]
    public async Task AudienceTheRuleDoesNotAllowForDownscoping_IsRefused()
    {
        var response = await DownscopeAsync(await ParentAsync(), ["sts.amazonaws.com"]);

        Assert.That(response.Error, Is.EqualTo("invalid_target"));
        Assert.That(response.ErrorId, Is.EqualTo("TB1207"));
        Assert.That(response.AccessToken, Is.Null);
    }

    [Test]
    public async Task AudienceThePresentedTokenLacks_IsRefused()
    {
        var parent = (await DownscopeAsync(await ParentAsync(), ["https://deploy.internal/payments"])).AccessToken!;

        var response = await DownscopeAsync(parent, ["https://deploy.internal/payments", "sts.amazonaws.com"]);

        Assert.That(response.ErrorId, Is.EqualTo("TB1207"));
    }

    [Test]
    public async Task BroaderScope_IsRefused()
    {
        var response = await DownscopeAsync(await ParentAsync(), ["https://deploy.internal/payments"], scope: "deploy:payments admin");

        Assert.That(response.Error, Is.EqualTo("invalid_scope"));
        Assert.That(response.ErrorId, Is.EqualTo("TB1209"));
    }

    [Test]
    public async Task LongerLifetime_IsCappedAtTheRemainingLifetime()
    {
        var parent = await ParentAsync();

        var response = await DownscopeAsync(parent, ["https://deploy.internal/payments"], lifetime: "86400");

        Assert.That(response.Claims()["exp"]!.GetValue<long>(), Is.LessThanOrEqualTo(JwtParts.Payload(parent)["exp"]!.GetValue<long>()));
        Assert.That(response.Body["expires_in"]!.GetValue<int>(), Is.LessThanOrEqualTo(600));
    }

    [Test]
    public async Task PlainJwtFromTheBroker_IsNotAnAccessToken()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "sts.amazonaws.com");
        form.Add(new("requested_token_type", TokenTypes.Jwt));
        var plain = (await _broker.PostFormAsync(form)).AccessToken!;

        var response = await DownscopeAsync(plain, ["sts.amazonaws.com"]);

        Assert.That(response.ErrorId, Is.EqualTo("TB1016"));
    }

    [Test]
    public async Task CiJobToken_PresentedAsAccessToken_IsRefused()
    {
        var response = await DownscopeAsync(_broker.GitHubToken(), ["https://deploy.internal/payments"]);

        Assert.That(response.ErrorId, Is.EqualTo("TB1016"));
    }

    [Test]
    public async Task BrokerTokenWithAlteredClaims_IsRefused()
    {
        var parent = await ParentAsync();
        var parts = parent.Split('.');
        var claims = JwtParts.Payload(parent);
        claims["aud"] = new JsonArray("sts.amazonaws.com", "https://deploy.internal/payments", "https://evil.example");
        var forged = parts[0] + "." + JwtParts.B64(claims.ToJsonString()) + "." + parts[2];

        var response = await DownscopeAsync(forged, ["https://evil.example"]);

        Assert.That(response.ErrorId, Is.EqualTo("TB1016"));
    }

    [Test]
    public async Task BrokerTokenFromAnotherBroker_IsRefused()
    {
        await using var other = await BrokerHarness.StartAsync();
        var foreign = (await other.ExchangeAsync(other.GitHubToken(), "sts.amazonaws.com", "https://deploy.internal/payments")).AccessToken!;

        var response = await DownscopeAsync(foreign, ["https://deploy.internal/payments"]);

        Assert.That(response.ErrorId, Is.EqualTo("TB1016"));
    }

    [Test]
    public async Task RuleWithoutDownscopeAudiences_RefusesDownscoping()
    {
        var read = await _broker.ExchangeAsync(_broker.GitHubToken(), "https://artifacts.internal");

        var response = await DownscopeAsync(read.AccessToken!, ["https://artifacts.internal"]);

        Assert.That(response.ErrorId, Is.EqualTo("TB1207"));
        Assert.That(_broker.AuditFor(response)!.Detail, Does.Contain("downscope_audiences"));
    }

    [Test]
    public async Task RevokedParent_CannotBeDownscoped()
    {
        var parent = await ParentAsync();
        var revoked = await StateApi.RevokeAsync(_broker, parent);
        Assert.That(revoked.Status, Is.EqualTo(HttpStatusCode.OK));

        var response = await DownscopeAsync(parent, ["https://deploy.internal/payments"]);

        Assert.That(response.ErrorId, Is.EqualTo("TB1208"));
    }

    [Test]
    public async Task DownscopedToken_IsIntrospectableAndRevocable()
    {
        var child = (await DownscopeAsync(await ParentAsync(), ["https://deploy.internal/payments"])).AccessToken!;

        var active = await _api.IntrospectAsync(_broker, child);
        await StateApi.RevokeAsync(_broker, child);
        var inactive = await _api.IntrospectAsync(_broker, child);

        Assert.That(active.Body["active"]!.GetValue<bool>(), Is.True, active.Raw);
        Assert.That(inactive.Raw, Is.EqualTo("{\"active\":false}"));
    }

    [Test]
    public async Task BlockedRepository_CannotDownscopeEarlierTokens()
    {
        await using var broker = await BrokerHarness.StartAsync(_api.Settings());
        var parent = (await broker.ExchangeAsync(broker.GitHubToken(), "sts.amazonaws.com", "https://deploy.internal/payments")).AccessToken!;
        var block = await _api.AdminAsync(broker, HttpMethod.Post, "/admin/blocks", """{"repository_id":"900101","reason":"incident"}""");
        Assert.That(block.Status, Is.EqualTo(HttpStatusCode.Created), block.Raw);

        var form = new List<KeyValuePair<string, string>>
        {
            new("grant_type", TokenTypes.TokenExchangeGrant),
            new("subject_token", parent),
            new("subject_token_type", TokenTypes.AccessToken),
            new("audience", "https://deploy.internal/payments"),
        };
        var response = await broker.PostFormAsync(form);

        Assert.That(response.ErrorId, Is.EqualTo("TB1206"));
    }
}
