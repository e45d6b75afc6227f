using System.Diagnostics.Metrics;
using TokenBroker.Hosting;
using TokenBroker.Rules.Diagnostics;

namespace TokenBroker.Rules;

/// <summary>Where the rule set in force came from and how the last reload went; shown by <c>/readyz</c>.</summary>
internal sealed record RuleReloadStatus
{
    /// <summary>Increments with every rule set swapped in; 1 is the set loaded at start-up.</summary>
    public required int Version { get; init; }
    public required DateTimeOffset LoadedAt { get; init; }
    public required int RuleCount { get; init; }
    public string? LastFailureTrigger { get; init; }
    public DateTimeOffset? LastFailureAt { get; init; }
    public IReadOnlyList<string> LastFailure { get; init; } = [];
}

/// <summary>
/// Reloads rules on demand (file change, SIGHUP, admin call). The new set is compiled and linted off to the side
/// by <see cref="RuleStore.Load"/> and swapped in with one reference assignment, so a request sees either the old
/// or the new set, never a mixture. A bad change keeps the last good rules and is logged, counted and shown in
/// readiness detail.
/// </summary>
internal sealed partial class RuleReloader
{
    private readonly RuleStore _store;
    private readonly TimeProvider _time;
    private readonly ILogger<RuleReloader> _logger;
    private readonly Counter<long> _reloads;
    private readonly Lock _gate = new();
    private volatile RuleReloadStatus _status;

    public RuleReloader(RuleStore store, TimeProvider time, ILogger<RuleReloader> logger, BrokerMetrics metrics)
    {
        _store = store;
        _time = time;
        _logger = logger;
        _status = new RuleReloadStatus { Version = 1, LoadedAt = time.GetUtcNow(), RuleCount = store.Current?.Rules.Count ?? 0 };
        _reloads = metrics.Meter.CreateCounter<long>("tokenbroker.rules.reloads", description: "Rule reloads, by outcome (ok, failed).");
        metrics.Meter.CreateObservableGauge("tokenbroker.rules.version", () => (long)_status.Version, description: "Version of the rule set in force.");
        metrics.Meter.CreateObservableGauge("tokenbroker.rules.last_reload_failed", () => _status.LastFailureAt is null ? 0L : 1L, description: "1 while the last reload attempt failed and older rules are in force.");
    }

    public RuleReloadStatus Status => _status;

    /// <summary>Compiles the rules again and swaps them in when they are good. Serialised: one reload at a time.</summary>
    public RuleReloadStatus Reload(string trigger)
    {
        lock (_gate)
        {
            var result = _store.Load();
            var now = _time.GetUtcNow();
            if (result.HasErrors)
            {
                var errors = result.Diagnostics.Where(d => d.Severity == RuleSeverity.Error).Select(d => d.ToString()).ToList();
                _status = _status with { LastFailureTrigger = trigger, LastFailureAt = now, LastFailure = errors };
                _reloads.Add(1, new KeyValuePair<string, object?>("outcome", "failed"));
                Log.ReloadFailed(_logger, trigger, errors.Count, _status.Version, string.Join(" | ", errors));
            }
            else
            {
                _status = new RuleReloadStatus { Version = _status.Version + 1, LoadedAt = now, RuleCount = result.RuleSet!.Rules.Count };
                _reloads.Add(1, new KeyValuePair<string, object?>("outcome", "ok"));
                Log.Reloaded(_logger, trigger, _status.Version, _status.RuleCount);
            }

            return _status;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2100, Level = LogLevel.Information, Message = "Rules reloaded ({Trigger}): version {Version}, {RuleCount} rules")]
        public static partial void Reloaded(ILogger logger, string trigger, int version, int ruleCount);

        [LoggerMessage(EventId = 2101, Level = LogLevel.Error, Message = "Rules reload ({Trigger}) failed with {ErrorCount} error(s); keeping version {Version}: {Errors}")]
        public static partial void ReloadFailed(ILogger logger, string trigger, int errorCount, int version, string errors);
    }
}
