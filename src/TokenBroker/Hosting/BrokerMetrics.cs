using System.Diagnostics;
using System.Diagnostics.Metrics;
using TokenBroker.Audit;

namespace TokenBroker.Hosting;

/// <summary>
/// The broker's meter (<c>TokenBroker</c>), for any System.Diagnostics.Metrics listener or exporter. Every tag has a
/// bounded set of values: outcomes, error ids, provider names and rule ids come from the configuration and the
/// error catalogue; request-controlled values (repository, audience, subject) are never tags, they are in the audit
/// log (see docs/observability.md).
/// </summary>
internal sealed class BrokerMetrics : IDisposable
{
    public const string MeterName = "TokenBroker";

    /// <summary>The <c>runner_environment</c> values that become tag values; anything else is <c>other</c>.</summary>
    private static readonly string[] RunnerEnvironments = ["github-hosted", "gitlab-hosted", "self-hosted"];

    private readonly Counter<long> _exchanges;
    private readonly Histogram<double> _exchangeDuration;
    private readonly Counter<long> _revocations;
    private readonly Counter<long> _introspections;
    private readonly Counter<long> _adminCalls;
    private readonly Counter<long> _jwksRefreshes;
    private readonly Counter<long> _stateErrors;
    private readonly Counter<long> _signatures;
    private readonly Counter<long> _signFailures;
    private readonly Counter<long> _auditBlocked;
    private readonly Counter<long> _auditWriteFailures;

    public BrokerMetrics()
    {
        _exchanges = Meter.CreateCounter<long>("tokenbroker.exchanges", "{exchange}", "Token exchanges, by outcome, provider, rule, error_id and runner_environment.");
        _exchangeDuration = Meter.CreateHistogram(
            "tokenbroker.exchange.duration",
            "s",
            "Time to answer a token exchange, by outcome.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
        _revocations = Meter.CreateCounter<long>("tokenbroker.revocations", "{request}", "POST /revoke requests, by outcome and error_id.");
        _introspections = Meter.CreateCounter<long>("tokenbroker.introspections", "{request}", "POST /introspect requests, by outcome and error_id.");
        _adminCalls = Meter.CreateCounter<long>("tokenbroker.admin.calls", "{request}", "Admin API calls, by operation, outcome and error_id.");
        _jwksRefreshes = Meter.CreateCounter<long>("tokenbroker.jwks.refreshes", "{refresh}", "Fetches of a provider's discovery document and JWKS, by provider and result (ok, failed).");
        _stateErrors = Meter.CreateCounter<long>("tokenbroker.state.errors", "{error}", "State store operations that failed (the broker failed closed), by operation.");
        _signatures = Meter.CreateCounter<long>("tokenbroker.key.signatures", "{signature}", "Tokens signed, by kid, alg and source (local, pkcs11).");
        _signFailures = Meter.CreateCounter<long>("tokenbroker.key.sign_failures", "{failure}", "Signing attempts that failed, by kid, alg and source.");
        _auditBlocked = Meter.CreateCounter<long>("tokenbroker.audit.blocked", "{event}", "Audit events whose request waited because the audit buffer was full.");
        _auditWriteFailures = Meter.CreateCounter<long>("tokenbroker.audit.write_failures", "{event}", "Audit events that could not be written to the sink.");
    }

    public Meter Meter { get; } = new(MeterName);

    /// <summary>Counts what an audit event records: the one place where request outcomes become metrics.</summary>
    public void Record(AuditEvent audit)
    {
        var errorId = audit.ErrorId ?? "none";
        switch (audit.Type)
        {
            case "exchange":
                var tags = new TagList
                {
                    { "outcome", audit.Outcome },
                    { "provider", audit.Provider ?? "none" },
                    { "rule", audit.Rule ?? "none" },
                    { "error_id", errorId },
                    { "runner_environment", RunnerEnvironmentTag(audit.RunnerEnvironment) },
                };
                _exchanges.Add(1, tags);
                _exchangeDuration.Record(audit.LatencyMs / 1000.0, new KeyValuePair<string, object?>("outcome", audit.Outcome));
                break;
            case "revoke":
                _revocations.Add(1, new KeyValuePair<string, object?>("outcome", audit.Outcome), new KeyValuePair<string, object?>("error_id", errorId));
                break;
            case "introspect":
                _introspections.Add(1, new KeyValuePair<string, object?>("outcome", audit.Outcome), new KeyValuePair<string, object?>("error_id", errorId));
                break;
            default:
                if (audit.Type.StartsWith("admin.", StringComparison.Ordinal))
                {
                    _adminCalls.Add(1, new KeyValuePair<string, object?>("operation", audit.Type), new KeyValuePair<string, object?>("outcome", audit.Outcome), new KeyValuePair<string, object?>("error_id", errorId));
                }

                break;
        }
    }

    /// <summary>A bounded tag value: the known hosted/self-hosted values, <c>other</c>, or <c>none</c> when absent.</summary>
    internal static string RunnerEnvironmentTag(string? value) =>
        value is null ? "none" : Array.IndexOf(RunnerEnvironments, value) >= 0 ? value : "other";

    public void JwksRefreshed(string provider, bool ok) =>
        _jwksRefreshes.Add(1, new KeyValuePair<string, object?>("provider", provider), new KeyValuePair<string, object?>("result", ok ? "ok" : "failed"));

    public void StateError(string operation) => _stateErrors.Add(1, new KeyValuePair<string, object?>("operation", operation));

    public void Signed(string kid, string algorithm, string source, bool ok) =>
        (ok ? _signatures : _signFailures).Add(
            1,
            new KeyValuePair<string, object?>("kid", kid),
            new KeyValuePair<string, object?>("alg", algorithm),
            new KeyValuePair<string, object?>("source", source));

    public void AuditBlocked() => _auditBlocked.Add(1);

    public void AuditWriteFailed(long events) => _auditWriteFailures.Add(events);

    public void Dispose() => Meter.Dispose();
}

/// <summary>
/// The broker's activity source (<c>TokenBroker</c>): an <c>exchange</c> activity per token request with children
/// <c>validate</c>, <c>rules</c>, <c>state</c> and <c>sign</c>. Tags carry ids and outcomes, never token content.
/// </summary>
internal static class BrokerTracing
{
    public const string SourceName = "TokenBroker";

    public static ActivitySource Source { get; } = new(SourceName);

    /// <summary>Copies the audit event's outcome onto the request's activity (bounded, secret-free fields only).</summary>
    public static void Complete(Activity? activity, AuditEvent audit)
    {
        if (activity is null)
        {
            return;
        }

        activity.SetTag("tokenbroker.request_id", audit.RequestId);
        activity.SetTag("tokenbroker.outcome", audit.Outcome);
        if (audit.Provider is not null)
        {
            activity.SetTag("tokenbroker.provider", audit.Provider);
        }

        if (audit.Rule is not null)
        {
            activity.SetTag("tokenbroker.rule", audit.Rule);
        }

        if (audit.ErrorId is not null)
        {
            activity.SetTag("tokenbroker.error_id", audit.ErrorId);
            activity.SetStatus(audit.Outcome == "error" ? ActivityStatusCode.Error : ActivityStatusCode.Unset, audit.ErrorId);
        }

        if (audit.IssuedJti is not null)
        {
            activity.SetTag("tokenbroker.issued_jti", audit.IssuedJti);
        }
    }
}
