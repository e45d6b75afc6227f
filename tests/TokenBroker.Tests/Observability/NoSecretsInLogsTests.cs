using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using TokenBroker.Demo;
using TokenBroker.Exchange;
using TokenBroker.Tests.Infrastructure;
using TokenBroker.Tests.State;

namespace TokenBroker.Tests.Observability;

/// <summary>
/// Drives every kind of request, refusal and fault through a broker whose entire log output is captured (every
/// application log entry at Trace level with its exception text, and the real audit file), then searches the
/// output for every token, every token segment and every credential secret the test used.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class NoSecretsInLogsTests
{
    private const string Payments = "https://deploy.internal/payments";

    private readonly List<string> _tokens = [];
    private readonly List<string> _secrets = [];
    private readonly List<string> _statuses = [];

    [Test]
    public async Task NoTokenOrSecret_ReachesAnyLogOutput_OnAnyPathIncludingExceptions()
    {
        var dir = Directory.CreateTempSubdirectory("tb-nosecrets-").FullName;
        var capture = new CapturingLoggerProvider();
        var api = StateApi.Create();
        _secrets.Add(api.AdminSecret);
        _secrets.Add(api.IntrospectionSecret);
        FaultSwitchStore? faults = null;
        await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab", "rogue");
        try
        {
            HarnessOptions Options(string auditFile) => new()
            {
                Extra = new Dictionary<string, string?>(api.Settings())
                {
                    ["TokenBroker:Audit:Sink"] = "file",
                    ["TokenBroker:Audit:Path"] = Path.Combine(dir, auditFile),
                },
                SharedIssuer = issuer,
                RealAuditSink = true,
                MinimumLogLevel = LogLevel.Trace,
                ConfigureLogging = logging =>
                {
                    logging.AddProvider(capture);
                    logging.AddFilter<CapturingLoggerProvider>(null, LogLevel.Trace);
                },
                WrapStateStore = inner => faults = new FaultSwitchStore(inner),
            };

            await using (var broker = await BrokerHarness.StartAsync(Options("audit.log")))
            {
                await DriveAsync(broker, api, faults!);
            }

            // A provider that serves garbage instead of a JWKS, met with a cold key cache.
            issuer.JwksOverride = "{\"keys\": [ {\"kty\": \"RSA\", garbage";
            await using (var broker = await BrokerHarness.StartAsync(Options("audit-2.log")))
            {
                await ExchangeAsync(broker, broker.GitHubToken(), Payments);
            }

            issuer.JwksOverride = null;

            var audit = File.ReadAllText(Path.Combine(dir, "audit.log")) + File.ReadAllText(Path.Combine(dir, "audit-2.log"));
            var logs = capture.Text;

            // The capture must have seen the paths it is meant to cover, or the search below proves nothing.
            Assert.That(_statuses, Does.Contain("200").And.Contain("400").And.Contain("401").And.Contain("500").And.Contain("503"), string.Join(",", _statuses));
            Assert.That(logs, Does.Contain("failed unexpectedly").And.Contain("InvalidOperationException"), "the forced exception was logged with its exception text");
            var events = audit.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            var types = events.Select(e => e.GetProperty("type").GetString()).Distinct().ToList();
            Assert.That(types, Is.SupersetOf(new[] { "exchange", "revoke", "introspect", "admin.revoke", "admin.block.create", "admin.block.list", "admin.block.delete", "admin.rules.reload" }));
            Assert.That(events.Select(e => e.GetProperty("outcome").GetString()), Is.SupersetOf(new[] { "issued", "refused", "error", "revoked", "active", "inactive", "done" }));
            Assert.That(_tokens, Has.Count.GreaterThan(10));

            foreach (var secret in Secrets())
            {
                Assert.That(audit, Does.Not.Contain(secret), $"audit log contains a secret or token part of length {secret.Length}");
                Assert.That(logs, Does.Not.Contain(secret), $"application log contains a secret or token part of length {secret.Length}");
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>Every full token, each of its segments, and each credential secret (segments too short to be meaningful are skipped).</summary>
    private IEnumerable<string> Secrets() =>
        _tokens.Concat(_tokens.SelectMany(t => t.Split('.'))).Concat(_secrets).Where(s => s.Length >= 16).Distinct();

    private async Task DriveAsync(BrokerHarness broker, StateApi api, FaultSwitchStore faults)
    {
        // Success, and downscoping of the issued token.
        var issued = await ExchangeAsync(broker, broker.GitHubToken(), "sts.amazonaws.com", Payments);
        var parent = issued.AccessToken!;
        await PostAsync(broker, [new("grant_type", TokenTypes.TokenExchangeGrant), new("subject_token", parent), new("subject_token_type", TokenTypes.AccessToken), new("audience", Payments)]);
        await PostAsync(broker, [new("grant_type", TokenTypes.TokenExchangeGrant), new("subject_token", parent), new("subject_token_type", TokenTypes.AccessToken), new("audience", Payments), new("scope", "deploy:payments admin")]);

        // Every class of refusal.
        var replayed = broker.GitHubToken();
        await ExchangeAsync(broker, replayed, Payments);
        await ExchangeAsync(broker, replayed, Payments);
        await ExchangeAsync(broker, broker.GitHubToken(), "https://not-granted.example");
        await ExchangeAsync(broker, broker.GitHubToken("pull_request_from_fork"), Payments);
        await ExchangeAsync(broker, broker.GitHubToken(tweak: c => c["repository"] = "acme/app\r\n{\"type\":\"exchange\",\"outcome\":\"issued\"}\u001b[2J"), Payments);
        await ExchangeAsync(broker, broker.Issuer.Mint("rogue", Fixtures.Load("github", "push_main_production"), broker.Audience), Payments);
        await ExchangeAsync(broker, broker.Issuer.Mint("github", Fixtures.Load("github", "push_main_production"), "https://someone-else.example"), Payments);
        await ExchangeAsync(broker, broker.GitHubToken(lifetime: TimeSpan.FromMinutes(5), now: DateTimeOffset.UtcNow.AddHours(-2)), Payments);
        var tampered = broker.GitHubToken();
        _tokens.Add(tampered);
        await ExchangeAsync(broker, tampered[..^8] + (tampered.EndsWith("AAAAAAAA", StringComparison.Ordinal) ? "BBBBBBBB" : "AAAAAAAA"), Payments);
        await ExchangeAsync(broker, "eyJhbGciOiJub25lIn0." + JwtParts.B64("{\"iss\":\"x\"}") + ".", Payments);
        await ExchangeAsync(broker, "not-a-jwt-but-a-long-secret-looking-string-0123456789", Payments);
        var wrongGrant = broker.GitHubToken();
        _tokens.Add(wrongGrant);
        await PostAsync(broker, [new("grant_type", "client_credentials"), new("subject_token", wrongGrant), new("subject_token_type", TokenTypes.IdToken)]);
        await PostAsync(broker, [new("grant_type", TokenTypes.TokenExchangeGrant), new("subject_token", broker.GitHubToken()), new("subject_token_type", TokenTypes.IdToken), new("audience", Payments), new("scope", "deploy:payments admin")]);

        // Revocation and introspection: active, inactive, foreign, unauthenticated.
        var second = (await ExchangeAsync(broker, broker.GitHubToken(), Payments)).AccessToken!;
        Record(await api.IntrospectAsync(broker, second));
        Record(await StateApi.RevokeAsync(broker, parent));
        Record(await api.IntrospectAsync(broker, parent));
        Record(await api.IntrospectAsync(broker, replayed));
        var wrongSecret = "wrong-introspection-secret-" + Guid.NewGuid().ToString("N");
        _secrets.Add(wrongSecret);
        Record(await StateApi.IntrospectAsync(broker, second, StateApi.Basic("payments-api", wrongSecret)));

        // Admin calls with a credential, and one with a wrong credential.
        var jti = JwtParts.Payload(second)["jti"]!.GetValue<string>();
        Record(await api.AdminAsync(broker, HttpMethod.Post, "/admin/revoke", $$"""{"jti":"{{jti}}"}"""));
        var block = await api.AdminAsync(broker, HttpMethod.Post, "/admin/blocks", """{"repository_id":"900101","reason":"incident 42"}""");
        Record(block);
        await ExchangeAsync(broker, broker.GitHubToken(), Payments);
        Record(await api.AdminAsync(broker, HttpMethod.Get, "/admin/blocks"));
        Record(await api.AdminAsync(broker, HttpMethod.Delete, "/admin/blocks/" + block.Body["block"]!["id"]!.GetValue<string>()));
        Record(await api.AdminAsync(broker, HttpMethod.Post, "/admin/rules/reload"));
        var wrongAdmin = "wrong-admin-secret-" + Guid.NewGuid().ToString("N");
        _secrets.Add(wrongAdmin);
        Record(await api.AdminAsync(broker, HttpMethod.Get, "/admin/blocks", auth: new AuthenticationHeaderValue("Bearer", wrongAdmin)));

        // Faults: the state store unreachable (503), and failing with an unexpected exception (500).
        faults.Failing = true;
        await ExchangeAsync(broker, broker.GitHubToken(), Payments);
        Record(await api.IntrospectAsync(broker, second));
        faults.Unexpected = true;
        await ExchangeAsync(broker, broker.GitHubToken(), Payments);
        faults.Failing = false;
        faults.Unexpected = false;
    }

    private async Task<ExchangeResponse> ExchangeAsync(BrokerHarness broker, string subjectToken, params string[] audiences)
    {
        _tokens.Add(subjectToken);
        return await PostAsync(broker, BrokerHarness.ExchangeForm(subjectToken, audiences));
    }

    private async Task<ExchangeResponse> PostAsync(BrokerHarness broker, List<KeyValuePair<string, string>> form)
    {
        _tokens.AddRange(form.Where(f => f.Key == "subject_token").Select(f => f.Value));
        return Record(await broker.PostFormAsync(form));
    }

    private ExchangeResponse Record(ExchangeResponse response)
    {
        _statuses.Add(((int)response.Status).ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (response.AccessToken is { } token)
        {
            _tokens.Add(token);
        }

        return response;
    }

    /// <summary>Captures every log entry: message, and the full exception text including inner exceptions and stack.</summary>
    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        private readonly ConcurrentQueue<string> _entries = new();

        public string Text => string.Join('\n', _entries);

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _entries);

        public void Dispose()
        {
        }

        private sealed class Logger(string category, ConcurrentQueue<string> entries) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull
            {
                entries.Enqueue($"scope {category}: {state}");
                return null;
            }

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var text = new StringBuilder($"{logLevel} {category}[{eventId.Id}] {formatter(state, exception)}");
                if (state is IEnumerable<KeyValuePair<string, object?>> values)
                {
                    foreach (var (k, v) in values)
                    {
                        text.Append($" {k}={v}");
                    }
                }

                if (exception is not null)
                {
                    text.Append(" exception: ").Append(exception);
                }

                entries.Enqueue(text.ToString());
            }
        }
    }
}
