using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using TokenBroker.Demo;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Operations;

/// <summary>/readyz covers provider keys; a provider outage with cached keys degrades but does not fail readiness.</summary>
[TestFixture]
public sealed class ProviderReadinessTests
{
    private static async Task<(HttpStatusCode Status, string Body)> ReadyAsync(BrokerHarness broker)
    {
        using var response = await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static async Task<(HttpStatusCode Status, string Body)> WaitForAsync(BrokerHarness broker, Func<(HttpStatusCode Status, string Body), bool> condition, TimeSpan timeout)
    {
        var watch = Stopwatch.StartNew();
        var last = await ReadyAsync(broker);
        while (!condition(last) && watch.Elapsed < timeout)
        {
            await Task.Delay(100);
            last = await ReadyAsync(broker);
        }

        return last;
    }

    [Test]
    public async Task Readyz_WithEveryProviderCached_IsReadyAndListsThem()
    {
        await using var broker = await BrokerHarness.StartAsync();

        var ready = await WaitForAsync(broker, r => r.Status == HttpStatusCode.OK, TimeSpan.FromSeconds(10));

        Assert.That(ready.Status, Is.EqualTo(HttpStatusCode.OK), ready.Body);
        Assert.That(ready.Body, Does.Match(@"provider github: \d+ key\(s\) fetched at").And.Match(@"provider gitlab: \d+ key\(s\) fetched at"));
    }

    [Test]
    public async Task Readyz_WhenNoProviderKeysCanBeFetched_IsNotReady_AndRecoversWhenTheProviderReturns()
    {
        var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        issuer.Down = true;
        try
        {
            await using var broker = await BrokerHarness.StartAsync(sharedIssuer: issuer);

            var down = await WaitForAsync(broker, r => r.Body.Contains("NO KEYS", StringComparison.Ordinal), TimeSpan.FromSeconds(10));
            Assert.That(down.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), down.Body);
            Assert.That(down.Body, Does.Contain("providers: no provider's keys could be fetched").And.Contain("provider github: NO KEYS"));

            // No exchange arrives at a replica the load balancer left out: the background warm-up must retry by itself.
            issuer.Down = false;
            var back = await WaitForAsync(broker, r => r.Status == HttpStatusCode.OK, TimeSpan.FromSeconds(20));
            Assert.That(back.Status, Is.EqualTo(HttpStatusCode.OK), back.Body);
        }
        finally
        {
            await issuer.DisposeAsync();
        }
    }

    [Test]
    public async Task Readyz_WhenAProviderFailsAfterItsKeysWereCached_IsReadyButDegraded()
    {
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?> { ["TokenBroker:Providers:github:UnknownKeyRefreshInterval"] = "00:00:01" });
        await WaitForAsync(broker, r => r.Status == HttpStatusCode.OK, TimeSpan.FromSeconds(10));

        // A token with a kid the cache does not know forces a refresh, which fails while the provider is down.
        broker.Issuer.Down = true;
        var refused = await broker.ExchangeAsync(broker.GitHubToken(tweak: null) is var t ? RewriteKid(broker, t) : t, "https://deploy.internal/payments");
        Assert.That(refused.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), refused.Raw);

        var ready = await ReadyAsync(broker);

        Assert.That(ready.Status, Is.EqualTo(HttpStatusCode.OK), ready.Body);
        Assert.That(ready.Body, Does.Match(@"provider github: DEGRADED: refresh failed at .* serving the last good \d+ key\(s\)"));
        Assert.That((await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments")).Status, Is.EqualTo(HttpStatusCode.OK), "the last good keys still serve");
    }

    private static string RewriteKid(BrokerHarness broker, string token)
    {
        var header = JwtParts.Header(token);
        header["kid"] = "rotated-away";
        var payload = JwtParts.Payload(token);
        return broker.Issuer.SignRaw("github", header, payload);
    }

    private static Dictionary<string, string?> GitLabUnreachable(bool requireAll) => new()
    {
        ["TokenBroker:Providers:gitlab:Issuer"] = $"http://127.0.0.1:{FakeCiIssuer.FreePort()}/gitlab",
        ["TokenBroker:Providers:gitlab:FetchRetries"] = "0",
        ["TokenBroker:Hosting:RequireAllProviderKeys"] = requireAll ? "true" : "false",
    };

    [Test]
    public async Task Readyz_WithOneProviderUnreachableAndAnotherCached_IsReady_UnlessAllAreRequired()
    {
        await using var lenient = await BrokerHarness.StartAsync(GitLabUnreachable(requireAll: false));
        await using var strict = await BrokerHarness.StartAsync(GitLabUnreachable(requireAll: true), sharedIssuer: lenient.Issuer);

        var ready = await WaitForAsync(lenient, r => r.Body.Contains("provider gitlab: NO KEYS", StringComparison.Ordinal) && r.Body.Contains("provider github: 1", StringComparison.Ordinal), TimeSpan.FromSeconds(10));
        var notReady = await WaitForAsync(strict, r => r.Body.Contains("provider gitlab: NO KEYS", StringComparison.Ordinal), TimeSpan.FromSeconds(10));

        Assert.That(ready.Status, Is.EqualTo(HttpStatusCode.OK), ready.Body);
        Assert.That(notReady.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), notReady.Body);
        Assert.That(notReady.Body, Does.Contain("providers: no keys for gitlab (Hosting:RequireAllProviderKeys)"));
    }
}

/// <summary>Stopping: readiness flips first, in-flight requests finish, new connections are refused.</summary>
[TestFixture]
public sealed class GracefulShutdownTests
{
    [Test]
    public async Task Stop_WithAnExchangeInFlight_LetsItFinish_AndRefusesNewConnections()
    {
        var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        issuer.JwksDelay = TimeSpan.FromSeconds(2);
        try
        {
            var broker = await BrokerHarness.StartAsync(sharedIssuer: issuer);
            var port = new Uri(broker.Url).Port;

            // Cold key cache behind a slow provider: this exchange is in flight for about two seconds.
            var inFlight = broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
            await Task.Delay(300);
            Assert.That(inFlight.IsCompleted, Is.False, "the exchange must still be running when the stop begins");

            var watch = Stopwatch.StartNew();
            var stopping = broker.App.StopAsync();
            await Task.Delay(300);

            using (var probe = new TcpClient())
            {
                var refused = Assert.ThrowsAsync<SocketException>(async () => await probe.ConnectAsync(IPAddress.Loopback, port));
                Assert.That(refused!.SocketErrorCode, Is.EqualTo(SocketError.ConnectionRefused));
            }

            var response = await inFlight;
            await stopping;

            Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "the stop waited for the request, not for the shutdown timeout");
            await broker.DisposeAsync();
        }
        finally
        {
            await issuer.DisposeAsync();
        }
    }

    [Test]
    public async Task Stop_WithADrainDelay_AnswersReadyz503WhileStillServing()
    {
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?> { ["TokenBroker:Hosting:DrainDelay"] = "00:00:02" });
        using (var before = await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative)))
        {
            Assert.That(before.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }

        var stopping = broker.App.StopAsync();
        await Task.Delay(200);

        // A fresh connection: the listener is still open during the drain delay.
        using var client = new HttpClient { BaseAddress = new Uri(broker.Url) };
        using var ready = await client.GetAsync(new Uri("/readyz", UriKind.Relative));
        var body = await ready.Content.ReadAsStringAsync();
        var exchange = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        await stopping;

        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        Assert.That(body, Does.StartWith("stopping:"));
        Assert.That(exchange.Status, Is.EqualTo(HttpStatusCode.OK), "requests are still served while load balancers catch up");
    }

    [Test]
    public async Task Stop_WithARequestSlowerThanTheShutdownTimeout_EndsAtTheTimeout()
    {
        var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        issuer.JwksDelay = TimeSpan.FromSeconds(8);
        try
        {
            var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?> { ["TokenBroker:Hosting:ShutdownTimeout"] = "00:00:01" }, sharedIssuer: issuer);
            var inFlight = broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
            await Task.Delay(300);

            var watch = Stopwatch.StartNew();
            await broker.App.StopAsync();
            var stopped = watch.Elapsed;

            Assert.That(stopped, Is.LessThan(TimeSpan.FromSeconds(4)), "Hosting:ShutdownTimeout bounds the drain");
            Assert.That(stopped, Is.GreaterThan(TimeSpan.FromMilliseconds(800)), "the stop did wait for the in-flight request");
            await Task.WhenAny(inFlight, Task.Delay(TimeSpan.FromSeconds(10)));
            await broker.DisposeAsync();
        }
        finally
        {
            await issuer.DisposeAsync();
        }
    }

    [Test]
    public async Task Sigterm_ToTheProcess_DrainsTheInFlightExchangeAndExitsCleanly()
    {
        var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");

        // Longer than System.CommandLine's own 2-second termination timeout (which must not cut the drain short), shorter than the 5-second fetch timeout.
        issuer.JwksDelay = TimeSpan.FromSeconds(3.5);
        var port = FakeCiIssuer.FreePort();
        var url = $"http://127.0.0.1:{port}";
        var arguments = new List<string> { typeof(TokenBroker.Hosting.BrokerApp).Assembly.Location, "serve", "--urls", url };
        arguments.AddRange(DemoCommand.DemoSettings(issuer, url).Where(kv => kv.Key != "urls").Select(kv => $"--{kv.Key}={kv.Value}"));
        using var process = Process.Start(new ProcessStartInfo("dotnet", arguments) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        var output = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri(url) };
            var watch = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    await client.GetAsync(new Uri("/healthz", UriKind.Relative));
                    break;
                }
                catch (HttpRequestException) when (watch.Elapsed < TimeSpan.FromSeconds(30))
                {
                    await Task.Delay(200);
                }
            }

            // The start-up warm-up is still waiting on the slow JWKS: this exchange waits with it.
            var token = issuer.Mint("github", Fixtures.Load("github", "push_main_production"), url);
            using var form = new FormUrlEncodedContent(BrokerHarness.ExchangeForm(token, "https://deploy.internal/payments"));
            var inFlight = client.PostAsync(new Uri("/token", UriKind.Relative), form);
            await Task.Delay(300);
            Assert.That(inFlight.IsCompleted, Is.False, "the exchange must still be running when SIGTERM arrives");

            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                await kill.WaitForExitAsync();
            }

            using var response = await inFlight;
            using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await process.WaitForExitAsync(exit.Token);

            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
            Assert.That(process.ExitCode, Is.EqualTo(0), () => { lock (output) { return output.ToString(); } });
            lock (output)
            {
                Assert.That(output.ToString(), Does.Contain("Stopping: readiness answers 503"));
            }
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }

            await process.WaitForExitAsync();
            await issuer.DisposeAsync();
        }
    }
}
