using TokenBroker.Rules;
using TokenBroker.Signing;
using TokenBroker.State;

namespace TokenBroker.Hosting;

/// <summary>Liveness (the process answers) and readiness (rules loaded, signing key usable, state store reachable).</summary>
internal static class HealthEndpoints
{
    public static void MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", async (RuleStore rules, RuleReloader reloader, SigningKeyRing keys, IStateStore state, BlockCache blocks, CancellationToken cancel) =>
        {
            var problems = new List<string>();
            var details = new List<string>();
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

            try
            {
                keys.Active.Sign("readyz"u8);
            }
            catch (SigningUnavailableException)
            {
                problems.Add("signing: active key cannot sign");
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

            var detail = string.Join('\n', details);
            return problems.Count == 0
                ? Results.Text("ready\n" + detail + "\n")
                : Results.Text(string.Join('\n', problems) + "\n" + detail + "\n", statusCode: StatusCodes.Status503ServiceUnavailable);
        });
    }
}
