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
        app.MapGet("/readyz", async (RuleStore rules, RuleReloader reloader, SigningKeyRing keys, IStateStore state, BlockCache blocks, KeyRotationSync rotations, CancellationToken cancel) =>
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

            var detail = string.Join('\n', details);
            return problems.Count == 0
                ? Results.Text("ready\n" + detail + "\n")
                : Results.Text(string.Join('\n', problems) + "\n" + detail + "\n", statusCode: StatusCodes.Status503ServiceUnavailable);
        });
    }
}
