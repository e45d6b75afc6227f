using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TokenBroker.Audit;
using TokenBroker.Cli;
using TokenBroker.Exchange;
using TokenBroker.Hosting;

namespace TokenBroker.Demo;

/// <summary>
/// <c>tokenbroker demo</c>: the broker on its embedded default plus a fake GitHub/GitLab issuer on loopback, one
/// successful exchange with the issued token's claims and the deciding rule, then refusals with their reasons.
/// </summary>
internal static class DemoCommand
{
    public static async Task<int> RunAsync(bool serve, TextWriter output, CancellationToken cancel)
    {
        await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab").ConfigureAwait(false);
        var audit = new MemoryAuditSink();
        var brokerUrl = $"http://127.0.0.1:{FakeCiIssuer.FreePort()}";
        var built = BrokerApp.Build(new BrokerAppOptions
        {
            Overrides = DemoSettings(issuer, brokerUrl),
            AuditSink = audit,
            MinimumLogLevel = LogLevel.Warning,
        });
        if (built.App is null)
        {
            foreach (var error in built.Errors)
            {
                await output.WriteLineAsync($"error: {error}").ConfigureAwait(false);
            }

            return BrokerCli.Failed;
        }

        await using var app = built.App;
        await app.StartAsync(cancel).ConfigureAwait(false);
        issuer.DefaultAudience = brokerUrl;

        if (serve)
        {
            await output.WriteLineAsync(JsonSerializer.Serialize(new
            {
                broker = brokerUrl,
                github_issuer = issuer.IssuerUrl("github"),
                gitlab_issuer = issuer.IssuerUrl("gitlab"),
                // Shaped like the runner's ACTIONS_ID_TOKEN_REQUEST_URL, which always carries a query string.
                actions_id_token_request_url = issuer.IssuerUrl("github") + "/_apis/token?api-version=2.0",
                actions_id_token_request_token = issuer.RequestToken,
                audience = brokerUrl,
            })).ConfigureAwait(false);
            await output.FlushAsync(cancel).ConfigureAwait(false);
            await app.WaitForShutdownAsync(cancel).ConfigureAwait(false);
            return BrokerCli.Ok;
        }

        using var client = new HttpClient { BaseAddress = new Uri(brokerUrl) };
        await output.WriteLineAsync($"""
            TokenBroker demo
              broker      {brokerUrl}  (embedded default: in-memory state, generated ES256 key, sample rules from config/rules)
              fake issuer {issuer.IssuerUrl("github")}  (GitHub-shaped job tokens, RS256, discovery + JWKS)

            1) A push to main of octo-org/payments, environment production, asks for https://deploy.internal/payments
            """).ConfigureAwait(false);

        var jobToken = issuer.Mint("github", Fixtures.Load("github", "push_main_production"), brokerUrl);
        var (status, body) = await ExchangeAsync(client, jobToken, "https://deploy.internal/payments", cancel).ConfigureAwait(false);
        var ok = status == 200;
        if (ok)
        {
            var token = body["access_token"]!.GetValue<string>();
            var parts = token.Split('.');
            var header = JsonNode.Parse(Base64UrlDecode(parts[0]));
            var claims = JsonNode.Parse(Base64UrlDecode(parts[1]));
            await output.WriteLineAsync($"""
                   200 OK  token_type={body["token_type"]}  expires_in={body["expires_in"]}  issued_token_type={body["issued_token_type"]}
                   matched rule: {claims!["rule"]}
                   header: {header!.ToJsonString()}
                   claims:
                """).ConfigureAwait(false);
            await output.WriteLineAsync(Indent(claims.ToJsonString(new JsonSerializerOptions { WriteIndented = true }), "     ")).ConfigureAwait(false);
        }
        else
        {
            await output.WriteLineAsync($"   unexpected answer {status}: {body.ToJsonString()}").ConfigureAwait(false);
        }

        await output.WriteLineAsync("\n2) A look-alike repository (octo-org/payments-evil) asks for the same audience").ConfigureAwait(false);
        var evil = issuer.Mint("github", Fixtures.Load("github", "lookalike_repository"), brokerUrl);
        var refused = await ShowRefusalAsync(client, evil, "https://deploy.internal/payments", audit, output, cancel).ConfigureAwait(false);

        await output.WriteLineAsync("\n3) A pull request from a fork asks for the production deploy audience").ConfigureAwait(false);
        var pr = issuer.Mint("github", Fixtures.Load("github", "pull_request_from_fork"), brokerUrl);
        refused &= await ShowRefusalAsync(client, pr, "https://deploy.internal/payments", audit, output, cancel).ConfigureAwait(false);

        await output.WriteLineAsync("\n4) The first job token is replayed").ConfigureAwait(false);
        refused &= await ShowRefusalAsync(client, jobToken, "https://deploy.internal/payments", audit, output, cancel).ConfigureAwait(false);

        await output.WriteLineAsync($"""

            Verify issued tokens like a cloud IAM would: {brokerUrl}/.well-known/openid-configuration and {brokerUrl}/.well-known/jwks.json.
            Run the broker yourself with `tokenbroker serve`; see README.md.
            """).ConfigureAwait(false);
        await app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        return ok && refused ? BrokerCli.Ok : BrokerCli.Failed;
    }

    /// <summary>The demo's configuration: the embedded default, with the providers pointed at the fake issuer.</summary>
    internal static Dictionary<string, string?> DemoSettings(FakeCiIssuer issuer, string brokerUrl) => new()
    {
        ["urls"] = brokerUrl,
        ["TokenBroker:Issuer"] = brokerUrl,
        ["TokenBroker:Providers:github:Kind"] = "github",
        ["TokenBroker:Providers:github:Issuer"] = issuer.IssuerUrl("github"),
        ["TokenBroker:Providers:github:AllowHttp"] = "true",
        ["TokenBroker:Providers:github:SharedIssuer"] = "true",
        ["TokenBroker:Providers:gitlab:Kind"] = "gitlab",
        ["TokenBroker:Providers:gitlab:Issuer"] = issuer.IssuerUrl("gitlab"),
        ["TokenBroker:Providers:gitlab:AllowHttp"] = "true",
        ["TokenBroker:Providers:gitlab:SharedIssuer"] = "true",
    };

    private static async Task<bool> ShowRefusalAsync(HttpClient client, string jobToken, string audience, MemoryAuditSink audit, TextWriter output, CancellationToken cancel)
    {
        var (status, body) = await ExchangeAsync(client, jobToken, audience, cancel).ConfigureAwait(false);
        var requestId = body["request_id"]?.GetValue<string>();
        var reason = audit.Events.LastOrDefault(e => e.RequestId == requestId)?.Detail;
        await output.WriteLineAsync($"""
               {status}  error={body["error"]}  error_id={body["error_id"]}
               error_description: {body["error_description"]}
               audit log (operators only): {reason}
            """).ConfigureAwait(false);
        return status is >= 400 and < 500;
    }

    private static async Task<(int Status, JsonObject Body)> ExchangeAsync(HttpClient client, string jobToken, string audience, CancellationToken cancel)
    {
        using var content = new FormUrlEncodedContent(
        [
            new("grant_type", TokenTypes.TokenExchangeGrant),
            new("subject_token", jobToken),
            new("subject_token_type", TokenTypes.IdToken),
            new("audience", audience),
        ]);
        using var response = await client.PostAsync(new Uri("/token", UriKind.Relative), content, cancel).ConfigureAwait(false);
        var text = await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false);
        return ((int)response.StatusCode, JsonNode.Parse(text)!.AsObject());
    }

    private static string Indent(string text, string prefix) => string.Join('\n', text.Split('\n').Select(l => prefix + l));

    private static string Base64UrlDecode(string s) => Encoding.UTF8.GetString(System.Buffers.Text.Base64Url.DecodeFromChars(s));

    /// <summary>Keeps audit events in memory so the demo can show the operator's view of a refusal.</summary>
    internal sealed class MemoryAuditSink : IAuditSink
    {
        private readonly List<AuditEvent> _events = [];

        public IReadOnlyList<AuditEvent> Events
        {
            get
            {
                lock (_events)
                {
                    return [.. _events];
                }
            }
        }

        public void Write(AuditEvent auditEvent)
        {
            lock (_events)
            {
                _events.Add(auditEvent);
            }
        }
    }
}
