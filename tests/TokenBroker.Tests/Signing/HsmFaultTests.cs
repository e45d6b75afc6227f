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
/// and stay up: readiness fails, exchanges answer 503 TB1303, the process keeps serving. When the token store comes
/// back, the broker reopens the key by itself and is ready again, without a restart.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class HsmFaultTests
{
    [Test]
    public async Task TokenStoreVanishing_FailsReadinessAndExchangesWith503_ThenTheBrokerRecoversByItselfWhenItReturns()
    {
        SoftHsm.RequireTools();
        var dir = SoftHsm.CreateTokenDirectory(("tbfault", [("k", "EC:prime256v1"), ("standby", "EC:prime256v1")]));
        await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        var port = FakeCiIssuer.FreePort();
        var url = $"http://127.0.0.1:{port}";
        var settings = DemoCommand.DemoSettings(issuer, url);
        settings.Remove("urls");
        settings["TokenBroker:Signing:Keys:0:Source"] = "pkcs11";
        settings["TokenBroker:Signing:Keys:0:Uri"] = "pkcs11:token=tbfault;object=k";
        settings["TokenBroker:Signing:Keys:0:PinEnvironmentVariable"] = "TB_FAULT_PIN";

        // A standby key is opened too but never signs, so it never fails by itself: it must not keep the dead PKCS#11
        // module alive.
        settings["TokenBroker:Signing:Keys:1:Source"] = "pkcs11";
        settings["TokenBroker:Signing:Keys:1:Uri"] = "pkcs11:token=tbfault;object=standby";
        settings["TokenBroker:Signing:Keys:1:PinEnvironmentVariable"] = "TB_FAULT_PIN";
        settings["TokenBroker:Signing:Keys:1:Standby"] = "true";
        settings["TokenBroker:Signing:Keys:1:KeyId"] = "standby-1";
        var reopenInterval = TimeSpan.FromSeconds(2);
        settings["TokenBroker:Signing:ReopenInterval"] = reopenInterval.ToString();
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
            var gone = Stopwatch.StartNew();

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

            // The signer tried to reopen the key right after the first failure (the token is gone: that fails, or the
            // reopened handle fails to sign as well), then at most once per ReopenInterval: the other requests and /readyz were refused without touching the HSM.
            var attempts = log.Count(l => l.Contains(") reopened", StringComparison.Ordinal) || l.Contains("could not be reopened", StringComparison.Ordinal));
            Assert.That(attempts, Is.InRange(1, 1 + (int)(gone.Elapsed / reopenInterval)), text);
            Assert.That(log.Count(l => l.Contains("failed to sign", StringComparison.Ordinal)), Is.GreaterThanOrEqualTo(1), text);

            // The token store comes back: within a few reopen intervals the broker is ready and signs again, with the
            // same key (the JWKS does not change), in the same process.
            var jwks = (await GetAsync(client, "/.well-known/jwks.json")).Body;
            Directory.Move(Path.Combine(dir, "tokens-gone"), Path.Combine(dir, "tokens"));
            var back = Stopwatch.StartNew();
            while ((await GetAsync(client, "/readyz")).Status != HttpStatusCode.OK)
            {
                Assert.That(back.Elapsed, Is.LessThan(reopenInterval * 5), "the broker did not recover: " + string.Join('\n', log));
                Assert.That(process.HasExited, Is.False, string.Join('\n', log));
                await Task.Delay(200);
            }

            var after = await ExchangeAsync(client, issuer, url);
            Assert.That(after.Status, Is.EqualTo(HttpStatusCode.OK), "the reopened HSM key signs: " + after.Body);
            Assert.That((await GetAsync(client, "/.well-known/jwks.json")).Body, Is.EqualTo(jwks));
            text = string.Join('\n', log);
            Assert.That(text, Does.Contain("HSM key Signing:Keys:0 (pkcs11:token=tbfault;object=k;type=private) reopened"));
            Assert.That(text, Does.Not.Contain("DIFFERENT public key"));
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
