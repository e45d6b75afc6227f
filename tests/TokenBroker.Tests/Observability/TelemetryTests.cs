using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using TokenBroker.Demo;
using TokenBroker.Hosting;
using TokenBroker.Rules;
using TokenBroker.State;
using TokenBroker.Tests.Infrastructure;
using TokenBroker.Tests.State;

namespace TokenBroker.Tests.Observability;

/// <summary>Metrics (MeterListener) and traces (ActivityListener) after real requests to a broker on loopback.</summary>
[TestFixture]
public sealed class TelemetryTests
{
    private const string Audience = "https://deploy.internal/payments";

    private readonly ConcurrentQueue<Measurement> _measurements = new();
    private readonly ConcurrentQueue<Activity> _activities = new();
    private MeterListener _meterListener = null!;
    private ActivityListener _activityListener = null!;
    private FaultSwitchStore? _faults;
    private StateApi _api = null!;
    private BrokerHarness _broker = null!;

    private sealed record Measurement(Meter Meter, string Name, double Value, Dictionary<string, string?> Tags);

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _meterListener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == BrokerMetrics.MeterName)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            },
        };
        _meterListener.SetMeasurementEventCallback<long>((i, v, t, _) => Add(i, v, t));
        _meterListener.SetMeasurementEventCallback<double>((i, v, t, _) => Add(i, v, t));
        _meterListener.Start();
        _activityListener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == BrokerTracing.SourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = _activities.Enqueue,
        };
        ActivitySource.AddActivityListener(_activityListener);

        _api = StateApi.Create();
        _broker = await BrokerHarness.StartAsync(new HarnessOptions
        {
            Extra = _api.Settings(),
            WrapStateStore = inner => _faults = new FaultSwitchStore(inner),
        });
    }

    private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var dictionary = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var (k, v) in tags)
        {
            dictionary[k] = v?.ToString();
        }

        _measurements.Enqueue(new Measurement(instrument.Meter, instrument.Name, value, dictionary));
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        await _broker.DisposeAsync();
        _meterListener.Dispose();
        _activityListener.Dispose();
    }

    private Meter BrokerMeter => _broker.App.Services.GetRequiredService<BrokerMetrics>().Meter;

    /// <summary>Measurements of this broker's meter (other fixtures may run brokers in the same process).</summary>
    private List<Measurement> Of(string name) => _measurements.Where(m => ReferenceEquals(m.Meter, BrokerMeter) && m.Name == name).ToList();

    private static bool Tagged(Measurement m, params (string Key, string Value)[] tags) => tags.All(t => m.Tags.GetValueOrDefault(t.Key) == t.Value);

    [Test]
    public async Task IssuedExchange_IsCountedWithOutcomeProviderRuleAndRunnerEnvironment_AndTimed()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken(), Audience);
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        var rule = _broker.AuditFor(response)!.Rule!;

        var exchanges = Of("tokenbroker.exchanges").Where(m => Tagged(m, ("outcome", "issued"), ("provider", "github"), ("rule", rule), ("error_id", "none"), ("runner_environment", "github-hosted"))).ToList();
        Assert.That(exchanges, Is.Not.Empty);
        Assert.That(exchanges[0].Tags.Keys, Is.EquivalentTo(new[] { "outcome", "provider", "rule", "error_id", "runner_environment" }), "no unbounded tags such as repository");
        Assert.That(Of("tokenbroker.exchange.duration").Where(m => Tagged(m, ("outcome", "issued"))).Select(m => m.Value), Has.Some.InRange(0.0, 10.0).And.Some.GreaterThan(0.0));
        var key = _broker.App.Services.GetRequiredService<TokenBroker.Signing.SigningKeyRing>().Active;
        Assert.That(Of("tokenbroker.key.signatures").Where(m => Tagged(m, ("kid", key.KeyId), ("alg", "ES256"), ("source", "local"))), Is.Not.Empty);
    }

    [Test]
    public async Task RefusedExchange_IsCountedWithItsErrorId()
    {
        var response = await _broker.ExchangeAsync(_broker.GitHubToken(), "https://not-granted.example");
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.BadRequest), response.Raw);

        Assert.That(Of("tokenbroker.exchanges").Where(m => Tagged(m, ("outcome", "refused"), ("provider", "github"), ("error_id", response.ErrorId!))), Is.Not.Empty);
    }

    [Test]
    public async Task UnusualRunnerEnvironment_IsTaggedAsOther_AndSelfHostedAsItself()
    {
        var odd = await _broker.ExchangeAsync(_broker.GitHubToken(tweak: c => c["runner_environment"] = "\u001b[31mlaptop"), Audience);
        var selfHosted = await _broker.ExchangeAsync(_broker.GitHubToken(tweak: c => c["runner_environment"] = "self-hosted"), Audience);
        Assert.That(odd.Status, Is.EqualTo(HttpStatusCode.OK), odd.Raw);
        Assert.That(selfHosted.Status, Is.EqualTo(HttpStatusCode.OK), selfHosted.Raw);

        var tags = Of("tokenbroker.exchanges").Select(m => m.Tags["runner_environment"]).ToList();
        Assert.That(tags, Does.Contain("other").And.Contain("self-hosted"));
        Assert.That(tags, Has.None.Contains("laptop"), "a claim value never becomes a tag value");
        Assert.That(_broker.AuditFor(odd)!.RunnerEnvironment, Is.EqualTo("\u001b[31mlaptop"), "the audit log has the exact value");
    }

    [Test]
    public async Task StateStoreFailure_IsCountedByOperation_AndTheExchangeFailsClosed()
    {
        _faults!.Failing = true;
        ExchangeResponse response;
        try
        {
            response = await _broker.ExchangeAsync(_broker.GitHubToken(), Audience);
        }
        finally
        {
            _faults.Failing = false;
        }

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), response.Raw);
        Assert.That(Of("tokenbroker.state.errors").Where(m => Tagged(m, ("operation", "consume"))), Is.Not.Empty);
        Assert.That(Of("tokenbroker.exchanges").Where(m => Tagged(m, ("outcome", "refused"), ("error_id", response.ErrorId!))), Is.Not.Empty);
    }

    [Test]
    public async Task RevocationIntrospectionAndAdminCalls_AreCounted()
    {
        var issued = await _broker.ExchangeAsync(_broker.GitHubToken(), Audience);
        var active = await _api.IntrospectAsync(_broker, issued.AccessToken!);
        var unauthenticated = await StateApi.IntrospectAsync(_broker, issued.AccessToken!, null);
        var revoked = await StateApi.RevokeAsync(_broker, issued.AccessToken!);
        var inactive = await _api.IntrospectAsync(_broker, issued.AccessToken!);
        var list = await _api.AdminAsync(_broker, HttpMethod.Get, "/admin/blocks");
        Assert.That(new[] { active.Status, revoked.Status, inactive.Status, list.Status }, Has.All.EqualTo(HttpStatusCode.OK));
        Assert.That(unauthenticated.Status, Is.EqualTo(HttpStatusCode.Unauthorized));

        Assert.That(Of("tokenbroker.introspections").Where(m => Tagged(m, ("outcome", "active"))), Is.Not.Empty);
        Assert.That(Of("tokenbroker.introspections").Where(m => Tagged(m, ("outcome", "inactive"))), Is.Not.Empty);
        Assert.That(Of("tokenbroker.introspections").Where(m => Tagged(m, ("outcome", "refused"), ("error_id", unauthenticated.ErrorId!))), Is.Not.Empty);
        Assert.That(Of("tokenbroker.revocations").Where(m => Tagged(m, ("outcome", "revoked"))), Is.Not.Empty);
        Assert.That(Of("tokenbroker.admin.calls").Where(m => Tagged(m, ("operation", "admin.block.list"), ("outcome", "done"))), Is.Not.Empty);
        var introspection = _broker.AuditFor(active)!;
        Assert.That((introspection.Type, introspection.Outcome, introspection.Actor, introspection.IssuedJti), Is.EqualTo(("introspect", "active", "payments-api", _broker.AuditFor(issued)!.IssuedJti)));
    }

    [Test]
    public void RuleReloads_AreCountedByOutcome()
    {
        _broker.App.Services.GetRequiredService<RuleReloader>().Reload("test");

        Assert.That(Of("tokenbroker.rules.reloads").Where(m => Tagged(m, ("outcome", "ok"))), Is.Not.Empty);
    }

    [Test]
    public async Task JwksFetches_AreCountedByProviderAndResult()
    {
        // Start-up warm-up fetched both providers' keys.
        await WaitForAsync(() => Of("tokenbroker.jwks.refreshes").Any(m => Tagged(m, ("provider", "github"), ("result", "ok"))));

        await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        issuer.Down = true;
        await using var broker = await BrokerHarness.StartAsync(sharedIssuer: issuer);
        var meter = broker.App.Services.GetRequiredService<BrokerMetrics>().Meter;
        var response = await broker.ExchangeAsync(broker.GitHubToken(), Audience);

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), response.Raw);
        Assert.That(_measurements.Where(m => ReferenceEquals(m.Meter, meter) && m.Name == "tokenbroker.jwks.refreshes" && Tagged(m, ("provider", "github"), ("result", "failed"))), Is.Not.Empty);
    }

    [Test]
    public async Task Exchange_HasAnActivityWithValidateRulesStateAndSignChildren_AndNoTokenInAnyTag()
    {
        var jobToken = _broker.GitHubToken();
        var response = await _broker.ExchangeAsync(jobToken, Audience);
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);

        Activity? exchange = null;
        await WaitForAsync(() => (exchange = _activities.FirstOrDefault(a => a.OperationName == "exchange" && (string?)a.GetTagItem("tokenbroker.request_id") == response.RequestId)) is not null);
        var children = _activities.Where(a => a.ParentSpanId == exchange!.SpanId && a.TraceId == exchange.TraceId).Select(a => a.OperationName).ToList();

        Assert.That(children, Is.SupersetOf(new[] { "validate", "rules", "state", "sign" }));
        Assert.That(exchange!.GetTagItem("tokenbroker.outcome"), Is.EqualTo("issued"));
        Assert.That(exchange.GetTagItem("tokenbroker.provider"), Is.EqualTo("github"));
        var tagValues = _activities.Where(a => a.TraceId == exchange.TraceId).SelectMany(a => a.TagObjects).Select(t => t.Value?.ToString() ?? "").ToList();
        foreach (var secret in jobToken.Split('.').Concat(response.AccessToken!.Split('.')).Append(jobToken).Append(response.AccessToken!))
        {
            Assert.That(tagValues, Has.None.Contains(secret));
        }
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(10)), "timed out");
            await Task.Delay(20);
        }
    }
}

/// <summary>A state store that fails (as an unreachable Redis does) while <see cref="Failing"/> is set.</summary>
internal sealed class FaultSwitchStore(IStateStore inner) : IStateStore
{
    public volatile bool Failing;

    /// <summary>When set, failures are unexpected exceptions instead of <see cref="StateUnavailableException"/>.</summary>
    public bool Unexpected { get; set; }

    public event Action? BlocksChanged
    {
        add => inner.BlocksChanged += value;
        remove => inner.BlocksChanged -= value;
    }

    public event Action? KeyRotationsChanged
    {
        add => inner.KeyRotationsChanged += value;
        remove => inner.KeyRotationsChanged -= value;
    }

    private void Check()
    {
        if (Failing)
        {
            throw Unexpected ? new InvalidOperationException("state store bug") : new StateUnavailableException("state store unreachable (test)");
        }
    }

    public ValueTask<bool> TryConsumeAsync(string replayKey, DateTimeOffset replayExpiresAt, IssuedTokenRecord issued, CancellationToken cancel)
    {
        Check();
        return inner.TryConsumeAsync(replayKey, replayExpiresAt, issued, cancel);
    }

    public ValueTask ReleaseAsync(string replayKey, string issuedJti, CancellationToken cancel) => inner.ReleaseAsync(replayKey, issuedJti, cancel);

    public ValueTask RecordIssuedAsync(IssuedTokenRecord issued, CancellationToken cancel)
    {
        Check();
        return inner.RecordIssuedAsync(issued, cancel);
    }

    public ValueTask<IssuedTokenRecord?> GetIssuedAsync(string jti, CancellationToken cancel)
    {
        Check();
        return inner.GetIssuedAsync(jti, cancel);
    }

    public ValueTask<bool> RevokeAsync(string jti, DateTimeOffset revokedAt, CancellationToken cancel)
    {
        Check();
        return inner.RevokeAsync(jti, revokedAt, cancel);
    }

    public ValueTask<BlockSet> GetBlocksAsync(CancellationToken cancel) => inner.GetBlocksAsync(cancel);

    public ValueTask<long> AddBlockAsync(Block block, CancellationToken cancel)
    {
        Check();
        return inner.AddBlockAsync(block, cancel);
    }

    public ValueTask<bool> RemoveBlockAsync(string id, CancellationToken cancel) => inner.RemoveBlockAsync(id, cancel);

    public ValueTask<KeyRotationSet> GetKeyRotationsAsync(CancellationToken cancel) => inner.GetKeyRotationsAsync(cancel);

    public ValueTask<long?> TryAddKeyRotationAsync(long expectedVersion, KeyRotation rotation, CancellationToken cancel)
    {
        Check();
        return inner.TryAddKeyRotationAsync(expectedVersion, rotation, cancel);
    }

    public ValueTask<bool> PingAsync(CancellationToken cancel) => inner.PingAsync(cancel);
}
