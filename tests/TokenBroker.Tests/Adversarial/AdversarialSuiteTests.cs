using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using TokenBroker.Errors;
using TokenBroker.Providers;
using TokenBroker.Tests.Cli;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Adversarial;

/// <summary>
/// Runs every attack of <see cref="AdversarialCatalogue"/> against a real broker on loopback. Each one must be refused
/// with its status, OAuth error and stable id; no token may be issued; the audit event must record the refusal
/// without an issued jti; the description must not echo the token; the provider must see no discovery or JWKS call
/// unless one is due (an unknown kid may force one rate-limited refresh); and the trap server must never be called.
/// </summary>
[TestFixture]
public sealed class AdversarialSuiteTests
{
    private static readonly Dictionary<string, Attack> ByName = AdversarialCatalogue.All.ToDictionary(a => a.Name);

    private BrokerHarness _broker = null!;
    private Attacker _attacker = null!;
    private TrapServer _trap = null!;
    private AttackKit _kit = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _broker = await BrokerHarness.StartAsync();
        _attacker = new Attacker();
        _trap = await TrapServer.StartAsync(_attacker.Jwks());
        await WarmUpAsync(_broker);

        using var http = new HttpClient();
        var jwks = await http.GetStringAsync(new Uri(_broker.Issuer.IssuerUrl("github") + "/.well-known/jwks"));
        var jwk = JsonNode.Parse(jwks)!["keys"]![0]!.ToJsonString();
        Assert.That(jwks, Does.Contain(jwk), "the JWK must be the served bytes");

        var issued = await _broker.ExchangeAsync(_broker.GitHubToken(), AttackKit.DeployAudience);
        Assert.That(issued.AccessToken, Is.Not.Null, issued.Raw);
        _kit = new AttackKit(_broker, _attacker, _trap, jwk, jwks, issued.AccessToken!);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await _trap.DisposeAsync();
        _attacker.Dispose();
        await _broker.DisposeAsync();
    }

    /// <summary>Waits until every provider's keys are cached, so that later fetches are attributable to an attack.</summary>
    internal static async Task WarmUpAsync(BrokerHarness broker)
    {
        foreach (var source in broker.App.Services.GetRequiredService<ProviderRegistry>().Sources)
        {
            Assert.That(await source.WarmUpAsync(CancellationToken.None), Is.True, $"keys of {source.Provider.Name} could not be fetched");
        }
    }

    public static IEnumerable<string> Attacks() => ByName.Keys;

    [TestCaseSource(nameof(Attacks))]
    public async Task Attack_IsRefusedWithItsStableIdNoTokenAndNoUndueUpstreamCall(string name)
    {
        var attack = ByName[name];
        var request = attack.Build(_kit);
        var discoveryBefore = _broker.Issuer.DiscoveryHits;
        var jwksBefore = _broker.Issuer.JwksHits;

        ExchangeResponse response;
        using (request.Message)
        {
            response = await _broker.SendAsync(request.Message);
        }

        // The answer: status, OAuth error, stable id, and nothing that looks like a token.
        Assert.That(response.Status, Is.EqualTo(attack.Status), response.Raw);
        Assert.That(response.Error, Is.EqualTo(attack.Error), response.Raw);
        Assert.That(response.ErrorId, Is.EqualTo(attack.ErrorId), response.Raw);
        Assert.That(response.Body.ContainsKey("access_token"), Is.False, "no token is issued");
        Assert.That(response.Body.ContainsKey("refresh_token"), Is.False);
        var catalogued = BrokerErrors.All.Single(e => e.Id == attack.ErrorId);
        Assert.That((catalogued.Code, (HttpStatusCode)catalogued.Status), Is.EqualTo((attack.Error, attack.Status)), "the case agrees with the error catalogue");
        Assert.That(response.Headers.CacheControl?.NoStore, Is.True);
        Assert.That(response.RequestId, Is.Not.Null.And.Not.Empty);
        Assert.That(response.Body["request_id"]?.GetValue<string>(), Is.EqualTo(response.RequestId));
        Assert.That(response.Body["error_description"]?.GetValue<string>(), Does.Contain(attack.ErrorId).And.Contain(response.RequestId!));
        if (request.SubjectToken is { Length: > 20 } token)
        {
            Assert.That(response.Raw, Does.Not.Contain(token[^20..]), "the answer must not echo token content");
            Assert.That(response.Raw, Does.Not.Contain(token[..20]), "the answer must not echo token content");
        }

        // The audit event: the refusal, with the same id, and no issued token.
        var audit = _broker.AuditFor(response);
        Assert.That(audit, Is.Not.Null, "every refusal is audited");
        Assert.That(audit!.Outcome, Is.EqualTo("refused"));
        Assert.That(audit.ErrorId, Is.EqualTo(attack.ErrorId));
        Assert.That(audit.ErrorCode, Is.EqualTo(attack.Error));
        Assert.That(audit.IssuedJti, Is.Null);
        Assert.That(audit.Detail, Is.Not.Null.And.Not.Empty);

        // Upstream: no provider call unless an unknown kid may force one rate-limited refresh; never the trap.
        if (attack.AimsAtTrap)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(500));
        }

        var discovery = _broker.Issuer.DiscoveryHits - discoveryBefore;
        var jwks = _broker.Issuer.JwksHits - jwksBefore;
        if (attack.Upstream == Upstream.None)
        {
            Assert.That((discovery, jwks), Is.EqualTo((0, 0)), "discovery and JWKS fetches caused by the attack");
        }
        else
        {
            Assert.That(discovery, Is.LessThanOrEqualTo(1), "discovery fetches caused by the attack");
            Assert.That(jwks, Is.LessThanOrEqualTo(1), "JWKS fetches caused by the attack");
        }

        Assert.That(_trap.Hits, Is.Zero, "the trap server must never be called");
    }

    [TestCase("86400")]
    [TestCase("2147483647")]
    public async Task TtlEscalation_IsClampedToTheRuleTtl(string requested)
    {
        // docs/rules.md: the lifetime is the rule's ttl, or requested_lifetime if that is shorter. A longer request is
        // not an error, but it can never lengthen the token.
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), AttackKit.DeployAudience);
        form.Add(new("requested_lifetime", requested));

        var response = await _broker.PostFormAsync(form);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        Assert.That(response.Body["expires_in"]!.GetValue<int>(), Is.EqualTo(600), "payments-deploy-prod has ttl 10m");
        var claims = response.Claims();
        Assert.That(claims["exp"]!.GetValue<long>() - claims["iat"]!.GetValue<long>(), Is.EqualTo(600));
        var audit = _broker.AuditFor(response)!;
        Assert.That(audit.IssuedExpiresAt!.Value.ToUnixTimeSeconds(), Is.EqualTo(claims["exp"]!.GetValue<long>()));
    }

    [Test]
    public async Task ScopeAndAudience_OfAGrantedExchange_AreNoMoreThanRequestedAndGranted()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), AttackKit.DeployAudience);
        form.Add(new("scope", "deploy:payments"));

        var response = await _broker.PostFormAsync(form);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        var claims = response.Claims();
        Assert.That(claims["aud"]!.ToJsonString(), Is.EqualTo("\"" + AttackKit.DeployAudience + "\"").Or.EqualTo("[\"" + AttackKit.DeployAudience + "\"]"));
        Assert.That(claims["scope"]!.GetValue<string>(), Is.EqualTo("deploy:payments"));
    }

    [Test]
    public void Catalogue_CoversEveryCategoryWithUniqueNames()
    {
        Assert.That(AdversarialCatalogue.All.Select(a => a.Name), Is.Unique);
        Assert.That(AdversarialCatalogue.All.Select(a => a.Category).Distinct(), Is.EquivalentTo(new[]
        {
            AdversarialCatalogue.AlgorithmsAndKeys, AdversarialCatalogue.Malformed, AdversarialCatalogue.ClaimValues, AdversarialCatalogue.FormAndMethod, AdversarialCatalogue.Escalation,
        }));
        Assert.That(AdversarialCatalogue.All.Where(a => a.Defence is null).Select(a => a.ErrorId), Has.All.Matches<string>(AdversarialCatalogue.Defences.ContainsKey), "every error id used has a documented defence");
    }

    /// <summary>docs/adversarial-suite.md carries the catalogue as a table; run with UPDATE_GOLDEN=1 to regenerate it.</summary>
    [Test]
    public void AdversarialSuiteDoc_ListsEveryAttackWithItsDefenceErrorIdAndTestCase()
    {
        var path = Path.Combine(RulesCliTests.RepoRoot, "docs", "adversarial-suite.md");
        const string begin = "<!-- catalogue:begin (generated from AdversarialCatalogue.cs; UPDATE_GOLDEN=1 rewrites it) -->";
        const string end = "<!-- catalogue:end -->";
        var doc = File.ReadAllText(path).ReplaceLineEndings("\n");
        var from = doc.IndexOf(begin, StringComparison.Ordinal);
        var to = doc.IndexOf(end, StringComparison.Ordinal);
        Assert.That(from, Is.GreaterThanOrEqualTo(0).And.LessThan(to), "the doc must have the catalogue markers");

        var table = CatalogueTable();
        var current = doc[(from + begin.Length)..to];
        if (Environment.GetEnvironmentVariable("UPDATE_GOLDEN") == "1" && current != table)
        {
            File.WriteAllText(path, doc[..(from + begin.Length)] + table + doc[to..]);
            current = table;
        }

        Assert.That(current, Is.EqualTo(table), "docs/adversarial-suite.md is out of date; run the test with UPDATE_GOLDEN=1");
    }

    private static string CatalogueTable()
    {
        var text = new StringBuilder("\n");
        foreach (var group in AdversarialCatalogue.All.GroupBy(a => a.Category))
        {
            text.Append("\n### ").Append(group.Key).Append("\n\n");
            text.Append("| attack | defence | error id | test case |\n|---|---|---|---|\n");
            foreach (var attack in group)
            {
                var defence = attack.Defence ?? AdversarialCatalogue.Defences[attack.ErrorId];
                var upstream = attack.Upstream == Upstream.AtMostOneRefresh ? " At most one rate-limited JWKS refresh." : "";
                var status = (int)attack.Status;
                text.Append(CultureInfoInvariant($"| {Cell(attack.Name)} | {Cell(defence)}{upstream} | {attack.ErrorId} ({status} `{attack.Error}`) | `Attack_IsRefusedWithItsStableIdNoTokenAndNoUndueUpstreamCall(\"{Cell(attack.Name)}\")` |\n"));
            }
        }

        return text.Append('\n').ToString();
    }

    private static string CultureInfoInvariant(FormattableString text) => FormattableString.Invariant(text);

    private static string Cell(string text) => text.Replace("|", "\\|", StringComparison.Ordinal);
}
