using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using TokenBroker.Demo;
using TokenBroker.Rules;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Signing;

/// <summary>
/// A real HSM fault: a broker process signing with its own SoftHSM2 token, whose token store is then taken away
/// underneath it (SoftHSM's objects become invalid, as when an HSM session is lost). The broker must fail closed
/// and stay up: readiness fails, exchanges answer 503 TB1303, the process keeps serving.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class HsmFaultTests
{
    [Test]
    public async Task TokenStoreVanishing_FailsReadinessAndExchangesWith503_WithoutCrashingOrLeakingThePin()
    {
        SoftHsm.RequireTools();
        var dir = SoftHsm.CreateTokenDirectory(("tbfault", [("k", "EC:prime256v1")]));
        await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        var port = FakeCiIssuer.FreePort();
        var url = $"http://127.0.0.1:{port}";
        var settings = DemoCommand.DemoSettings(issuer, url);
        settings.Remove("urls");
        settings["TokenBroker:Signing:Keys:0:Source"] = "pkcs11";
        settings["TokenBroker:Signing:Keys:0:Uri"] = "pkcs11:token=tbfault;object=k";
        settings["TokenBroker:Signing:Keys:0:PinEnvironmentVariable"] = "TB_FAULT_PIN";
        settings["TokenBroker:Signing:ReopenInterval"] = "00:01:00"; // longer than the test: one reopen at most
        var start = new ProcessStartInfo("dotnet", [typeof(RuleStore).Assembly.Location, "serve", "--urls", url, .. settings.Select(kv => $"--{kv.Key}={kv.Value}")])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        start.Environment["SOFTHSM2_CONF"] = SoftHsm.ConfFor(dir);
        start.Environment["TB_FAULT_PIN"] = SoftHsm.Pin;
        var log = new ConcurrentQueue<string>();
        using var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => log.Enqueue(e.Data ?? "");
        process.ErrorDataReceived += (_, e) => log.Enqueue(e.Data ?? "");
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri(url) };
            await WaitForAsync(async () => (await GetAsync(client, "/readyz")).Status == HttpStatusCode.OK, process, log);
            issuer.DefaultAudience = url;

            var before = await ExchangeAsync(client, issuer, url);
            Assert.That(before.Status, Is.EqualTo(HttpStatusCode.OK), "the HSM key signs: " + before.Body);

            Directory.Move(Path.Combine(dir, "tokens"), Path.Combine(dir, "tokens-gone"));

            var during = await ExchangeAsync(client, issuer, url);
            Assert.That(during.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), during.Body);
            Assert.That(JsonNode.Parse(during.Body)!["error_id"]!.GetValue<string>(), Is.EqualTo("TB1303"));
            Assert.That(during.RetryAfter, Is.Not.Null);
            for (var i = 0; i < 3; i++)
            {
                var again = await ExchangeAsync(client, issuer, url);
                Assert.That(again.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), again.Body);
            }

            var ready = await GetAsync(client, "/readyz");
            Assert.That(ready.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(ready.Body, Does.Contain("signing: ES256"));
            Assert.That((await GetAsync(client, "/healthz")).Status, Is.EqualTo(HttpStatusCode.OK), "the process keeps serving");
            Assert.That((await GetAsync(client, "/.well-known/jwks.json")).Status, Is.EqualTo(HttpStatusCode.OK), "verifiers still get the JWKS");
            Assert.That(process.HasExited, Is.False);

            var text = string.Join('\n', log);
            Assert.That(text, Does.Contain("HSM key Signing:Keys:0 (pkcs11:token=tbfault;object=k;type=private) failed to sign"));

            // The signer reopened the key on the first failure and retried once (the reopened handle failed as well:
            // libp11 caches SoftHSM's object handles; see docs/keys.md). Then it held off for ReopenInterval: the
            // later requests and /readyz were refused without touching the HSM.
            var failures = log.Count(l => l.Contains("failed to sign", StringComparison.Ordinal));
            var reopens = log.Count(l => l.Contains(") reopened", StringComparison.Ordinal) || l.Contains("could not be reopened", StringComparison.Ordinal));
            Assert.That(reopens, Is.EqualTo(1), text);
            Assert.That(failures, Is.EqualTo(2), text);
            Assert.That(text, Does.Not.Contain("pin-value"));
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<(HttpStatusCode Status, string Body, string? RetryAfter)> ExchangeAsync(HttpClient client, FakeCiIssuer issuer, string audience)
    {
        var token = issuer.Mint("github", Fixtures.Load("github", "push_main_production"), audience);
        using var content = new FormUrlEncodedContent(BrokerHarness.ExchangeForm(token, "https://deploy.internal/payments"));
        using var response = await client.PostAsync(new Uri("/token", UriKind.Relative), content);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(), response.Headers.RetryAfter?.ToString());
    }

    private static async Task<(HttpStatusCode Status, string Body)> GetAsync(HttpClient client, string path)
    {
        try
        {
            using var response = await client.GetAsync(new Uri(path, UriKind.Relative));
            return (response.StatusCode, await response.Content.ReadAsStringAsync());
        }
        catch (HttpRequestException)
        {
            return (0, "");
        }
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, Process process, ConcurrentQueue<string> log)
    {
        for (var i = 0; i < 300; i++)
        {
            if (await condition())
            {
                return;
            }

            Assert.That(process.HasExited, Is.False, "the broker exited: " + string.Join('\n', log));
            await Task.Delay(100);
        }

        Assert.Fail("the broker did not become ready: " + string.Join('\n', log));
    }
}
