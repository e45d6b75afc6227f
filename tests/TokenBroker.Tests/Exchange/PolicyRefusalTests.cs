using System.Net;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Exchange;

/// <summary>Trust-rule refusals over HTTP, with the operator-only reason in the audit log.</summary>
[TestFixture]
public sealed class PolicyRefusalTests
{
    private BrokerHarness _broker = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _broker = await BrokerHarness.StartAsync();

    [OneTimeTearDown]
    public async Task StopAsync() => await _broker.DisposeAsync();

    [Test]
    public async Task LookalikeRepository_MatchesNoRule()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken("lookalike_repository"), "https://deploy.internal/payments");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(response.Error, Is.EqualTo("invalid_request"));
        Assert.That(response.ErrorId, Is.EqualTo("TB1201"));
        Assert.That(response.AccessToken, Is.Null);
        var audit = _broker.AuditFor(response)!;
        Assert.That(audit.Detail, Does.Contain("payments-deploy-prod").And.Contain("900999"), "operators see which condition failed and the actual value");
        Assert.That(response.Raw, Does.Not.Contain("900999"), "callers do not");
    }

    [Test]
    public async Task PolicyRefusal_PutsTheExplainJsonIntoTheAuditEventOfItsRequestId()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken("lookalike_repository"), "https://deploy.internal/payments");

        var audit = _broker.AuditFor(response)!;
        Assert.That(audit.Explanation, Is.Not.Null);
        var explanation = audit.Explanation!.Value;
        Assert.That(explanation.GetProperty("dry_run").GetBoolean(), Is.False);
        Assert.That(explanation.GetProperty("input").GetProperty("kind").GetString(), Is.EqualTo("request"));
        Assert.That(explanation.GetProperty("input").GetProperty("signature_verified").GetBoolean(), Is.True);
        Assert.That(explanation.GetProperty("input").GetProperty("description").GetString(), Is.EqualTo($"request {response.RequestId}"));
        Assert.That(explanation.GetProperty("decision").GetProperty("error_id").GetString(), Is.EqualTo("TB1201"));
        Assert.That(explanation.GetProperty("rules").EnumerateArray().Select(r => r.GetProperty("id").GetString()), Is.EqualTo(new[] { "payments-deploy-prod", "payments-release-tags", "payments-ci-read" }));
        var failed = explanation.GetProperty("rules")[0].GetProperty("conditions").EnumerateArray().Single(c => c.GetProperty("claim").GetString() == "repository_id");
        Assert.That(failed.GetProperty("actual").GetString(), Is.EqualTo("900999"));
        Assert.That(failed.GetProperty("held").GetBoolean(), Is.False);
        Assert.That(response.Raw, Does.Not.Contain("conditions").And.Not.Contain("payments-deploy-prod"), "the explanation is for operators only");
    }

    [Test]
    public async Task GrantedExchange_HasNoExplanationInItsAuditEvent()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken("pull_request_from_fork"), "https://artifacts.internal");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        Assert.That(_broker.AuditFor(response)!.Explanation, Is.Null);
    }

    [Test]
    public async Task PullRequestAskingForDeployAudience_IsInvalidTarget()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken("pull_request_from_fork"), "https://deploy.internal/payments");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(response.Error, Is.EqualTo("invalid_target"));
        Assert.That(response.ErrorId, Is.EqualTo("TB1202"));
    }

    [Test]
    public async Task PullRequestAskingForReadAudience_IsGranted()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken("pull_request_from_fork"), "https://artifacts.internal");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        Assert.That(response.Claims()["rule"]!.GetValue<string>(), Is.EqualTo("payments-ci-read"));
        Assert.That(response.Claims()["stage"]!.GetValue<string>(), Is.EqualTo("read"));
    }

    [Test]
    public async Task NoAudienceWithMultiAudienceRule_IsInvalidTarget()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken());

        Assert.That(response.Error, Is.EqualTo("invalid_target"));
        Assert.That(response.ErrorId, Is.EqualTo("TB1203"));
    }

    [Test]
    public async Task RefusedPolicy_DoesNotConsumeTheJobToken()
    {
        var token = _broker.GitHubToken();
        var refused = await _broker.ExchangeAsync(token, "https://not-granted.example");
        var granted = await _broker.ExchangeAsync(token, "https://deploy.internal/payments");

        Assert.That(refused.ErrorId, Is.EqualTo("TB1202"));
        Assert.That(granted.Status, Is.EqualTo(HttpStatusCode.OK), granted.Raw);
    }
}
