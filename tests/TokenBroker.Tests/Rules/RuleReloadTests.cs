using System.Diagnostics;
using System.Net;
using TokenBroker.Demo;
using TokenBroker.Rules;
using TokenBroker.Tests.Infrastructure;
using TokenBroker.Tests.State;

namespace TokenBroker.Tests.Rules;

/// <summary>Hot reload: file changes and SIGHUP swap rules atomically; bad changes keep the last good rules.</summary>
[TestFixture]
public sealed class RuleReloadTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("tb-reload-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    /// <summary>A rule file whose single rule grants one audience with a version-tagged subject.</summary>
    private static string RuleFile(string version, string audience = "https://deploy.internal/payments") => $$"""
        rules:
          - id: payments-{{version}}
            provider: github
            when: { owner_id: "5001", repository_id: "900101" }
            grant:
              audiences: [{{audience}}]
              stage: deploy
              ttl: 5m
              subject: "{{version}}:{repository}"
        """;

    private async Task<BrokerHarness> StartAsync(string version, Dictionary<string, string?>? extra = null)
    {
        File.WriteAllText(Path.Combine(_dir, "rules.yaml"), RuleFile(version));
        var settings = new Dictionary<string, string?>
        {
            ["TokenBroker:Rules:Paths:0"] = _dir,
            ["TokenBroker:Rules:ReloadDebounce"] = "00:00:00.100",
        };
        foreach (var (k, v) in extra ?? [])
        {
            settings[k] = v;
        }

        return await BrokerHarness.StartAsync(settings);
    }

    private static async Task<string> ReadyAsync(BrokerHarness broker) =>
        await broker.Client.GetStringAsync(new Uri("/readyz", UriKind.Relative));

    private static async Task WaitForAsync(Func<Task<bool>> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(10)), "timed out waiting for the reload");
            await Task.Delay(50);
        }
    }

    [Test]
    public async Task ChangedRuleFile_IsReloadedAndUsed()
    {
        await using var broker = await StartAsync("a");
        var before = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        Assert.That(before.Claims()["rule"]!.GetValue<string>(), Is.EqualTo("payments-a"));

        File.WriteAllText(Path.Combine(_dir, "rules.yaml"), RuleFile("b"));
        await WaitForAsync(async () => (await ReadyAsync(broker)).Contains("version 2", StringComparison.Ordinal));

        var after = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        Assert.That(after.Claims()["rule"]!.GetValue<string>(), Is.EqualTo("payments-b"));
        Assert.That(after.Claims()["sub"]!.GetValue<string>(), Is.EqualTo("b:octo-org/payments"));
    }

    [Test]
    public async Task BadChange_KeepsTheLastGoodRules_AndIsReported()
    {
        await using var broker = await StartAsync("a");
        var reloader = broker.App.Services.GetRequiredService<RuleReloader>();

        File.WriteAllText(Path.Combine(_dir, "rules.yaml"), "rules:\n  - id: broken\n    provider: github\n    when: { repository_id: \"1\" }\n");
        await WaitForAsync(() => Task.FromResult(reloader.Status.LastFailureAt is not null));

        var ready = await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative));
        var body = await ready.Content.ReadAsStringAsync();
        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the last good rules are still in force");
        Assert.That(body, Does.Contain("FAILED").And.Contain("version 1").And.Contain("rules.yaml:2"));
        var response = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        Assert.That(response.Claims()["rule"]!.GetValue<string>(), Is.EqualTo("payments-a"));
    }

    [Test]
    public async Task SwapsUnderConcurrentLoad_NeverYieldAMixedDecision()
    {
        await using var broker = await StartAsync("a", new() { ["TokenBroker:Rules:Watch"] = "false" });
        var reloader = broker.App.Services.GetRequiredService<RuleReloader>();
        var tokens = Enumerable.Range(0, 300).Select(_ => broker.GitHubToken()).ToArray();
        using var stop = new CancellationTokenSource();

        var swapper = Task.Run(async () =>
        {
            var versions = new[] { "a", "b", "broken" };
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                var v = versions[i % versions.Length];
                File.WriteAllText(Path.Combine(_dir, "rules.yaml"), v == "broken" ? "rules: [" : RuleFile(v));
                reloader.Reload("test");
                await Task.Delay(5);
            }
        });
        var responses = await Task.WhenAll(tokens.Select(t => broker.ExchangeAsync(t, "https://deploy.internal/payments")));
        await stop.CancelAsync();
        await swapper;

        Assert.That(responses.Select(r => r.Status), Is.All.EqualTo(HttpStatusCode.OK));
        foreach (var claims in responses.Select(r => r.Claims()))
        {
            var rule = claims["rule"]!.GetValue<string>();
            var version = rule["payments-".Length..];
            Assert.That(claims["sub"]!.GetValue<string>(), Is.EqualTo($"{version}:octo-org/payments"), "subject and rule come from the same rule set");
        }

        Assert.That(reloader.Status.Version, Is.GreaterThan(2), "the swaps really happened during the load");
    }

    [Test]
    public async Task Sighup_ReloadsTheRulesOfARunningBroker()
    {
        File.WriteAllText(Path.Combine(_dir, "rules.yaml"), RuleFile("a"));
        var port = FakeCiIssuer.FreePort();
        var dll = typeof(RuleStore).Assembly.Location;
        using var process = Process.Start(new ProcessStartInfo("dotnet",
        [
            dll, "serve", "--urls", $"http://127.0.0.1:{port}",
            $"--TokenBroker:Rules:Paths:0={_dir}", "--TokenBroker:Rules:Watch=false",
        ])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        })!;
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            async Task<string> Ready()
            {
                try
                {
                    // The body, whatever the status: the default github.com and gitlab.com providers may be
                    // unreachable from here, which makes the broker not ready but still reports the rules.
                    using var response = await client.GetAsync(new Uri("/readyz", UriKind.Relative));
                    return await response.Content.ReadAsStringAsync();
                }
                catch (HttpRequestException)
                {
                    return string.Empty;
                }
            }

            await WaitForAsync(async () => (await Ready()).Contains("version 1", StringComparison.Ordinal));
            File.WriteAllText(Path.Combine(_dir, "rules.yaml"), RuleFile("b"));
            Assert.That((await Ready()), Does.Contain("version 1"), "file watching is off: nothing changes before the signal");

            using (var kill = Process.Start("kill", ["-HUP", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                await kill.WaitForExitAsync();
            }

            await WaitForAsync(async () => (await Ready()).Contains("version 2", StringComparison.Ordinal));
            Assert.That(process.HasExited, Is.False, "SIGHUP reloads; it does not stop the broker");
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    [Test]
    public async Task AdminReload_IsAuthenticated_SwapsGoodRules_AndReportsBadOnes()
    {
        var api = StateApi.Create();
        await using var broker = await StartAsync("a", new(api.Settings()) { ["TokenBroker:Rules:Watch"] = "false" });
        File.WriteAllText(Path.Combine(_dir, "rules.yaml"), RuleFile("b"));

        var anonymous = await api.AdminAsync(broker, HttpMethod.Post, "/admin/rules/reload", authenticate: false);
        var reloaded = await api.AdminAsync(broker, HttpMethod.Post, "/admin/rules/reload");
        var after = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        File.WriteAllText(Path.Combine(_dir, "rules.yaml"), "rules: [");
        var bad = await api.AdminAsync(broker, HttpMethod.Post, "/admin/rules/reload");

        Assert.That(anonymous.Status, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(reloaded.Status, Is.EqualTo(HttpStatusCode.OK), reloaded.Raw);
        Assert.That(reloaded.Body["version"]!.GetValue<int>(), Is.EqualTo(2));
        Assert.That(after.Claims()["rule"]!.GetValue<string>(), Is.EqualTo("payments-b"));
        Assert.That(bad.Status, Is.EqualTo(HttpStatusCode.UnprocessableEntity), bad.Raw);
        Assert.That(bad.Body["errors"]!.AsArray(), Is.Not.Empty);
        Assert.That(bad.Body["version"]!.GetValue<int>(), Is.EqualTo(2), "the last good rules stay in force");
        Assert.That(broker.Audit.Events.Count(e => e.Type == "admin.rules.reload"), Is.EqualTo(3), "every admin call is audited, refused ones too");
    }
}
