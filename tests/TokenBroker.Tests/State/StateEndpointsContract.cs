using System.Net;
using System.Text.Json.Nodes;
using TokenBroker.Demo;
using TokenBroker.Testing;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.State;

/// <summary>
/// Revocation, introspection, blocks and the admin API through HTTP, run once with the in-memory store and once
/// with a real redis-server: the endpoints must behave the same on both.
/// </summary>
public abstract class StateEndpointsContract
{
    private const string Payments = "https://deploy.internal/payments";

    private protected StateApi Api { get; } = StateApi.Create();
    private protected BrokerHarness Broker { get; private set; } = null!;

    private protected abstract Task<Dictionary<string, string?>> StoreSettingsAsync();

    // One broker per fixture (start-up costs about a second); tests keep to their own run ids and remove their blocks.
    [OneTimeSetUp]
    public async Task StartBroker()
    {
        var settings = Api.Settings();
        foreach (var (k, v) in await StoreSettingsAsync())
        {
            settings[k] = v;
        }

        Broker = await BrokerHarness.StartAsync(settings);
    }

    [OneTimeTearDown]
    public async Task StopBroker() => await Broker.DisposeAsync();

    private int _auditMark;

    [SetUp]
    public void MarkAudit() => _auditMark = Broker.Audit.Events.Count;

    /// <summary>Audit events written by the current test.</summary>
    private List<TokenBroker.Audit.AuditEvent> AuditSinceStart(string typePrefix) =>
        Broker.Audit.Events.Skip(_auditMark).Where(e => e.Type.StartsWith(typePrefix, StringComparison.Ordinal)).ToList();

    private async Task<string> IssueAsync(Action<JsonObject>? tweak = null, string? lifetime = null, bool gitlab = false)
    {
        var form = gitlab
            ? BrokerHarness.ExchangeForm(Broker.GitLabToken(), "https://iac.internal/state")
            : BrokerHarness.ExchangeForm(Broker.GitHubToken(tweak: tweak), Payments);
        if (lifetime is not null)
        {
            form.Add(new("requested_lifetime", lifetime));
        }

        var response = await Broker.PostFormAsync(form);
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        return response.AccessToken!;
    }

    private static void AssertInactive(ExchangeResponse response)
    {
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        Assert.That(response.Raw, Is.EqualTo("{\"active\":false}"));
        Assert.That(response.Headers.CacheControl?.NoStore, Is.True);
    }

    [Test]
    public async Task Introspection_WithoutAValidIntrospectionCredential_Is401WithAChallenge()
    {
        var token = await IssueAsync();

        foreach (var auth in new[] { null, StateApi.Basic("payments-api", "tbs_wrong"), StateApi.Basic("nobody", Api.IntrospectionSecret), Api.AdminAuth, new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", Api.IntrospectionSecret + "x") })
        {
            var response = await StateApi.IntrospectAsync(Broker, token, auth);
            Assert.That(response.Status, Is.EqualTo(HttpStatusCode.Unauthorized), auth?.ToString() ?? "none");
            Assert.That(response.ErrorId, Is.EqualTo("TB1401"));
            Assert.That(response.Headers.WwwAuthenticate.ToString(), Does.StartWith("Basic realm=\"tokenbroker-introspection\""));
            Assert.That(response.Raw, Does.Not.Contain("active"));
        }

        var bearer = await StateApi.IntrospectAsync(Broker, token, new("Bearer", Api.IntrospectionSecret));
        Assert.That(bearer.Body["active"]!.GetValue<bool>(), Is.True, "a Bearer secret works as well as Basic");
    }

    [Test]
    public async Task AnActiveToken_IsIntrospectedWithTheStandardFields()
    {
        var token = await IssueAsync();
        var claims = JwtParts.Payload(token);

        var response = await Api.IntrospectAsync(Broker, token);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        var body = response.Body;
        Assert.That(body["active"]!.GetValue<bool>(), Is.True);
        foreach (var name in new[] { "scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti" })
        {
            Assert.That(body[name]?.ToJsonString(), Is.EqualTo(claims[name]?.ToJsonString()), name);
        }

        Assert.That(body["token_type"]!.GetValue<string>(), Is.EqualTo("Bearer"));
        Assert.That(body.Select(p => p.Key), Is.EquivalentTo(new[] { "active", "scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "token_type" }));
    }

    private static IEnumerable<TestCaseData> NotOurTokens()
    {
        yield return new TestCaseData("junk").SetName("{m}(junk)");
        yield return new TestCaseData("a.b.c").SetName("{m}(three junk segments)");
        yield return new TestCaseData("job-token").SetName("{m}(a CI job token)");
        yield return new TestCaseData("other-key").SetName("{m}(signed by another key with our kid)");
        yield return new TestCaseData("tampered").SetName("{m}(our token with a changed claim)");
    }

    [TestCaseSource(nameof(NotOurTokens))]
    public async Task ForeignOrJunkTokens_AreExactlyInactive(string kind)
    {
        var ours = await IssueAsync();
        var token = kind switch
        {
            "job-token" => Broker.GitHubToken(),
            "other-key" => ForgeWithOtherKey(ours),
            "tampered" => Tamper(ours),
            _ => kind,
        };

        AssertInactive(await Api.IntrospectAsync(Broker, token));
        var revoke = await StateApi.RevokeAsync(Broker, token);
        Assert.That(revoke.Status, Is.EqualTo(HttpStatusCode.OK), "RFC 7009: 200 for tokens the broker does not know");
        Assert.That((await Api.IntrospectAsync(Broker, ours)).Body["active"]!.GetValue<bool>(), Is.True, "revoking a foreign token touches nothing");
    }

    [Test]
    public async Task AnExpiredToken_IsExactlyInactive()
    {
        var token = await IssueAsync(lifetime: "1");
        await Task.Delay(TimeSpan.FromMilliseconds(2100));

        AssertInactive(await Api.IntrospectAsync(Broker, token));
    }

    [Test]
    public async Task AJobRevokingItsOwnToken_MakesItInactive_AndIsAudited()
    {
        var token = await IssueAsync();
        var other = await IssueAsync();

        var revoke = await StateApi.RevokeAsync(Broker, token);

        Assert.That(revoke.Status, Is.EqualTo(HttpStatusCode.OK));
        AssertInactive(await Api.IntrospectAsync(Broker, token));
        Assert.That((await Api.IntrospectAsync(Broker, other)).Body["active"]!.GetValue<bool>(), Is.True, "only the presented token is revoked");
        var audit = AuditSinceStart("revoke").Last();
        Assert.That(audit.Outcome, Is.EqualTo("revoked"));
        Assert.That(audit.IssuedJti, Is.EqualTo(JwtParts.Payload(token)["jti"]!.GetValue<string>()));
        Assert.That(audit.TokenSha256, Is.EqualTo(TokenBroker.Audit.AuditEvent.Hash(token)));
        Assert.That(audit.JobTokenSha256, Is.Null);
    }

    [Test]
    public async Task Revoke_WithoutATokenParameter_IsRefused()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/revoke") { Content = new FormUrlEncodedContent([new("token_type_hint", "access_token")]) };
        var response = await Broker.SendAsync(request);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(response.ErrorId, Is.EqualTo("TB1407"));
    }

    [Test]
    public async Task Revoke_WithAnOversizedBody_IsRefusedBeforeParsing()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/revoke") { Content = new FormUrlEncodedContent([new("token", new string('a', 40 * 1024))]) };
        var response = await Broker.SendAsync(request);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge));
        Assert.That(response.ErrorId, Is.EqualTo("TB1004"));
    }

    [Test]
    public async Task TheAdminApi_RefusesCallsWithoutAnAdminCredential_AndAuditsThem()
    {
        foreach (var auth in new[] { null, Api.IntrospectionAuth, StateApi.Basic("ops-admin", "tbs_nope") })
        {
            var response = await Api.AdminAsync(Broker, HttpMethod.Get, "/admin/blocks", auth: auth, authenticate: false);
            Assert.That(response.Status, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(response.ErrorId, Is.EqualTo("TB1401"));
            Assert.That(response.Headers.WwwAuthenticate.ToString(), Does.StartWith("Basic realm=\"tokenbroker-admin\""));
        }

        var create = await Api.AdminAsync(Broker, HttpMethod.Post, "/admin/blocks", """{"repository_id":"900101"}""", auth: Api.IntrospectionAuth);
        Assert.That(create.Status, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That((await Broker.ExchangeAsync(Broker.GitHubToken(), Payments)).Status, Is.EqualTo(HttpStatusCode.OK), "nothing was blocked");
        Assert.That(AuditSinceStart("admin.").Select(e => e.Outcome).ToList(), Has.Count.EqualTo(4).And.All.EqualTo("refused"));
    }

    [Test]
    public async Task ABlockOnARepository_RefusesExchanges_DeactivatesIssuedTokens_AndLiftingItRestoresBoth()
    {
        var token = await IssueAsync();
        var otherRepo = await IssueAsync(gitlab: true);

        var create = await Api.AdminAsync(Broker, HttpMethod.Post, "/admin/blocks", """{"repository_id":"900101","reason":"incident 42"}""");
        Assert.That(create.Status, Is.EqualTo(HttpStatusCode.Created), create.Raw);
        var id = create.Body["block"]!["id"]!.GetValue<string>();
        try
        {
            await BlockedAndLiftedAsync(id, token, otherRepo);
        }
        finally
        {
            await Api.AdminAsync(Broker, HttpMethod.Delete, "/admin/blocks/" + id);
        }
    }

    private async Task BlockedAndLiftedAsync(string id, string token, string otherRepo)
    {
        Assert.That((await Api.AdminAsync(Broker, HttpMethod.Get, "/admin/blocks")).Body["blocks"]![0]!["created_by"]!.GetValue<string>(), Is.EqualTo("ops-admin"));

        var refused = await Broker.ExchangeAsync(Broker.GitHubToken(), Payments);
        Assert.That(refused.Status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(refused.ErrorId, Is.EqualTo("TB1206"));
        Assert.That(Broker.AuditFor(refused)!.Detail, Does.Contain(id));
        AssertInactive(await Api.IntrospectAsync(Broker, token));
        Assert.That((await Api.IntrospectAsync(Broker, otherRepo)).Body["active"]!.GetValue<bool>(), Is.True, "another repository is untouched");

        var list = await Api.AdminAsync(Broker, HttpMethod.Get, "/admin/blocks");
        Assert.That(list.Body["blocks"]!.AsArray().Select(b => b!["id"]!.GetValue<string>()), Is.EqualTo(new[] { id }));

        var delete = await Api.AdminAsync(Broker, HttpMethod.Delete, "/admin/blocks/" + id);
        Assert.That(delete.Status, Is.EqualTo(HttpStatusCode.NoContent));
        Assert.That((await Broker.ExchangeAsync(Broker.GitHubToken(), Payments)).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Api.IntrospectAsync(Broker, token)).Body["active"]!.GetValue<bool>(), Is.True);
        Assert.That((await Api.AdminAsync(Broker, HttpMethod.Delete, "/admin/blocks/" + id)).ErrorId, Is.EqualTo("TB1404"));

        var types = AuditSinceStart("admin.");
        Assert.That(types.Select(e => e.Type), Is.EqualTo(new[] { "admin.block.create", "admin.block.list", "admin.block.list", "admin.block.delete", "admin.block.delete" }));
        Assert.That(types[0].Actor, Is.EqualTo("ops-admin"));
        Assert.That(types[0].BlockId, Is.EqualTo(id));
        Assert.That(types[0].Selector!.RepositoryId, Is.EqualTo("900101"));
        Assert.That(types[4].Outcome, Is.EqualTo("refused"));
    }

    [Test]
    public async Task ABlockWithIssuedBefore_DeactivatesOlderTokens_ButAllowsNewExchanges()
    {
        var runId = "run-" + Guid.NewGuid().ToString("N")[..8];
        var old = await IssueAsync(tweak: c => c["run_id"] = runId);
        await Task.Delay(TimeSpan.FromMilliseconds(1100)); // iat has one-second resolution
        var cutoff = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", System.Globalization.CultureInfo.InvariantCulture);

        var create = await Api.AdminAsync(Broker, HttpMethod.Post, "/admin/blocks", $$"""{"rule_id":"payments-deploy-prod","run_id":"{{runId}}","issued_before":"{{cutoff}}"}""");
        Assert.That(create.Status, Is.EqualTo(HttpStatusCode.Created), create.Raw);

        AssertInactive(await Api.IntrospectAsync(Broker, old));
        await Task.Delay(TimeSpan.FromMilliseconds(1100));
        var fresh = await IssueAsync(tweak: c => c["run_id"] = runId);
        Assert.That((await Api.IntrospectAsync(Broker, fresh)).Body["active"]!.GetValue<bool>(), Is.True);
        await Api.AdminAsync(Broker, HttpMethod.Delete, "/admin/blocks/" + create.Body["block"]!["id"]!.GetValue<string>());
    }

    [Test]
    public async Task AdminRevokeByJti_MakesTheTokenInactive_AndAnUnknownJtiIs404()
    {
        var token = await IssueAsync();
        var jti = JwtParts.Payload(token)["jti"]!.GetValue<string>();

        var revoke = await Api.AdminAsync(Broker, HttpMethod.Post, "/admin/revoke", $$"""{"jti":"{{jti}}"}""");
        Assert.That(revoke.Status, Is.EqualTo(HttpStatusCode.OK), revoke.Raw);
        AssertInactive(await Api.IntrospectAsync(Broker, token));

        var unknown = await Api.AdminAsync(Broker, HttpMethod.Post, "/admin/revoke", """{"jti":"0000notissued"}""");
        Assert.That(unknown.Status, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(unknown.ErrorId, Is.EqualTo("TB1404"));
        var audit = AuditSinceStart("admin.revoke");
        Assert.That(audit.Select(e => e.Outcome), Is.EqualTo(new[] { "done", "refused" }));
        Assert.That(audit[0].IssuedJti, Is.EqualTo(jti));
    }

    private static IEnumerable<TestCaseData> BadAdminBodies()
    {
        yield return new TestCaseData("/admin/blocks", "{}", "application/json", "TB1403").SetName("{m}(empty selector)");
        yield return new TestCaseData("/admin/blocks", """{"issued_before":"2026-01-01T00:00:00Z"}""", "application/json", "TB1403").SetName("{m}(only issued_before)");
        yield return new TestCaseData("/admin/blocks", """{"repository_id":900101}""", "application/json", "TB1403").SetName("{m}(number instead of string)");
        yield return new TestCaseData("/admin/blocks", """{"repository_id":""}""", "application/json", "TB1403").SetName("{m}(empty string)");
        yield return new TestCaseData("/admin/blocks", """{"repository_id":"1","issued_before":"yesterday"}""", "application/json", "TB1403").SetName("{m}(bad date)");
        yield return new TestCaseData("/admin/blocks", """{"repo_id":"1"}""", "application/json", "TB1402").SetName("{m}(unknown property)");
        yield return new TestCaseData("/admin/blocks", """{"repository_id":"1","repository_id":"2"}""", "application/json", "TB1402").SetName("{m}(duplicate property)");
        yield return new TestCaseData("/admin/blocks", """["repository_id"]""", "application/json", "TB1402").SetName("{m}(not an object)");
        yield return new TestCaseData("/admin/blocks", "{", "application/json", "TB1402").SetName("{m}(truncated JSON)");
        yield return new TestCaseData("/admin/blocks", """{"repository_id":"1"}""", "text/plain", "TB1406").SetName("{m}(not JSON)");
        yield return new TestCaseData("/admin/blocks", "{\"reason\":\"" + new string('x', 9000) + "\"}", "application/json", "TB1405").SetName("{m}(too large)");
        yield return new TestCaseData("/admin/revoke", """{"jti":5}""", "application/json", "TB1402").SetName("{m}(jti not a string)");
    }

    [TestCaseSource(nameof(BadAdminBodies))]
    public async Task MalformedAdminBodies_AreRefusedWithAStableId(string path, string body, string contentType, string errorId)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, System.Text.Encoding.UTF8, contentType) };
        request.Headers.Authorization = Api.AdminAuth;
        var response = await Broker.SendAsync(request);

        Assert.That(response.ErrorId, Is.EqualTo(errorId), response.Raw);
        Assert.That(AuditSinceStart(path == "/admin/revoke" ? "admin.revoke" : "admin.block.create").Single().Outcome, Is.EqualTo("refused"));
        Assert.That((await Api.AdminAsync(Broker, HttpMethod.Get, "/admin/blocks")).Body["blocks"]!.AsArray(), Is.Empty);
    }

    [Test]
    public async Task Discovery_AnnouncesTheIntrospectionAndRevocationEndpoints()
    {
        var metadata = JsonNode.Parse(await Broker.Client.GetStringAsync(new Uri("/.well-known/openid-configuration", UriKind.Relative)))!;

        Assert.That(metadata["introspection_endpoint"]!.GetValue<string>(), Is.EqualTo(Broker.Url + "/introspect"));
        Assert.That(metadata["revocation_endpoint"]!.GetValue<string>(), Is.EqualTo(Broker.Url + "/revoke"));
    }

    private static string ForgeWithOtherKey(string ours)
    {
        var header = JwtParts.Header(ours);
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var input = ours[..ours.LastIndexOf('.')];
        var signature = key.SignData(System.Text.Encoding.ASCII.GetBytes(input), System.Security.Cryptography.HashAlgorithmName.SHA256);
        Assert.That(header["kid"], Is.Not.Null);
        return input + "." + JwtParts.B64(signature);
    }

    private static string Tamper(string ours)
    {
        var parts = ours.Split('.');
        var payload = JwtParts.Payload(ours);
        payload["sub"] = "github:octo-org/admin:production";
        return parts[0] + "." + JwtParts.B64(payload.ToJsonString()) + "." + parts[2];
    }
}

[TestFixture]
public sealed class InMemoryStateEndpointsTests : StateEndpointsContract
{
    private protected override Task<Dictionary<string, string?>> StoreSettingsAsync() => Task.FromResult(new Dictionary<string, string?>());
}

[TestFixture]
public sealed class RedisStateEndpointsTests : StateEndpointsContract
{
    private RedisServer? _redis;

    [OneTimeTearDown]
    public async Task StopRedis()
    {
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }

    // Started here rather than in a OneTimeSetUp of this class: the base class's OneTimeSetUp runs first.
    private protected override async Task<Dictionary<string, string?>> StoreSettingsAsync()
    {
        _redis = await RedisServer.StartAsync();
        return RedisSettings.For(_redis.EndPoint);
    }
}

internal static class RedisSettings
{
    /// <summary>
    /// Redis store settings with a key prefix of its own, so brokers of different tests never share state, and a
    /// 2 s budget so a loaded CI machine does not turn slow answers into 503s (the budget has its own tests).
    /// </summary>
    public static Dictionary<string, string?> For(string endpoint, string? prefix = null) => new()
    {
        ["TokenBroker:State:Redis:OperationTimeout"] = "00:00:02",
        ["TokenBroker:State:Store"] = "redis",
        ["TokenBroker:State:Redis:Endpoints:0"] = endpoint,
        ["TokenBroker:State:Redis:KeyPrefix"] = prefix ?? "t" + Guid.NewGuid().ToString("N")[..12] + ":",
    };
}
