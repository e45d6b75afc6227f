using TokenBroker.Configuration;
using TokenBroker.Providers;
using TokenBroker.Rules;
using TokenBroker.Signing;
using TokenBroker.State;

namespace TokenBroker.Hosting;

/// <summary>
/// Liveness (the process answers) and readiness: not stopping, rules loaded, signing key usable, state store
/// reachable, provider keys cached. A provider whose refresh fails while its last good keys are cached is reported
/// as degraded but stays ready, and so is one with no keys while another provider has some (unless
/// <c>Hosting:RequireAllProviderKeys</c>): an upstream outage must not take every replica out of the load balancer.
/// </summary>
internal static class HealthEndpoints
{
    public static void MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", async (RuleStore rules, RuleReloader reloader, SigningKeyRing keys, IStateStore state, BlockCache blocks, ProviderRegistry providers, ResolvedSettings settings, IHostApplicationLifetime lifetime, GracefulShutdown shutdown, KeyRotationSync rotations, CancellationToken cancel) =>
        {
            var problems = new List<string>();
            var details = new List<string>();
            if (lifetime.ApplicationStopping.IsCancellationRequested || shutdown.IsStopping)
            {
                // First, so load balancers stop sending new work while in-flight requests drain.
                problems.Add("stopping: shutting down, draining in-flight requests");
            }
            if (rules.Current is null)
            {
                problems.Add("rules: not loaded");
            }
            else
            {
                var status = reloader.Status;
                details.Add($"rules: version {status.Version}, {status.RuleCount} rules, loaded {status.LoadedAt:O}");
                if (status.LastFailureAt is { } failedAt)
                {
                    // Still ready: the last good rules are in force. The detail tells operators their change did not apply.
                    details.Add($"rules: reload ({status.LastFailureTrigger}) at {failedAt:O} FAILED with {status.LastFailure.Count} error(s), first: {(status.LastFailure.Count > 0 ? status.LastFailure[0] : "")}");
                }
            }

            // Every algorithm tokens are signed with needs an active key that signs now (an HSM session may be lost).
            foreach (var algorithm in keys.SigningAlgorithms)
            {
                try
                {
                    var signer = keys.ActiveFor(algorithm);
                    signer.Sign("readyz"u8);
                    details.Add($"signing: {algorithm} key '{signer.KeyId}' signs");
                }
                catch (SigningUnavailableException e)
                {
                    problems.Add($"signing: {algorithm}: {e.Message}");
                }
            }

            try
            {
                if (!await state.PingAsync(cancel).ConfigureAwait(false))
                {
                    problems.Add("state: store does not answer");
                }
            }
            catch (StateUnavailableException)
            {
                problems.Add("state: store unavailable");
            }

            if (!blocks.IsFresh)
            {
                problems.Add("state: block list not re-read recently");
            }

            if (!rotations.HasSynced)
            {
                problems.Add("signing: key rotations not read from the state store yet");
            }
            await CheckProvidersAsync(providers, settings.Hosting.RequireAllProviderKeys, problems, details, cancel).ConfigureAwait(false);

            var detail = string.Join('\n', details);
            return problems.Count == 0
                ? Results.Text("ready\n" + detail + "\n")
                : Results.Text(string.Join('\n', problems) + "\n" + detail + "\n", statusCode: StatusCodes.Status503ServiceUnavailable);
        });
    }

    /// <summary>
    /// The longest a readiness probe waits for a provider's first fetch still in flight (start-up warm-up); below the
    /// common 1-second probe timeout. A provider whose fetch already failed is reported at once.
    /// </summary>
    private static readonly TimeSpan FirstFetchWait = TimeSpan.FromMilliseconds(800);

    private static async Task CheckProvidersAsync(ProviderRegistry providers, bool requireAll, List<string> problems, List<string> details, CancellationToken cancel)
    {
        var withKeys = 0;
        var without = new List<string>();
        var firstFetches = providers.Sources.Where(s => s.LastSuccessAt is null && s.LastFailureAt is null).ToList();
        if (firstFetches.Count > 0)
        {
            // Right after start: join the warm-up's fetch (ConfigurationManager runs one at a time) for a moment.
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            wait.CancelAfter(FirstFetchWait);
            try
            {
                await Task.WhenAll(firstFetches.Select(s => s.WarmUpAsync(wait.Token))).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
            {
                // Still fetching: reported below as having no keys yet.
            }
        }

        foreach (var source in providers.Sources)
        {
            var name = source.Provider.Name;
            if (source.LastSuccessAt is not { } fetchedAt)
            {
                without.Add(name);
                details.Add($"provider {name}: NO KEYS: never fetched{(source.LastFailure is { } why ? $"; last failure at {source.LastFailureAt:O}: {why}" : "")}");
                continue;
            }

            withKeys++;
            details.Add(source.LastFailureAt is { } failedAt
                ? $"provider {name}: DEGRADED: refresh failed at {failedAt:O} ({source.LastFailure}); serving the last good {source.KeyCount} key(s) fetched at {fetchedAt:O}"
                : $"provider {name}: {source.KeyCount} key(s) fetched at {fetchedAt:O}");
        }

        if (providers.Sources.Count > 0 && withKeys == 0)
        {
            problems.Add("providers: no provider's keys could be fetched");
        }
        else if (requireAll && without.Count > 0)
        {
            problems.Add($"providers: no keys for {string.Join(", ", without)} (Hosting:RequireAllProviderKeys)");
        }
    }
}
