using System.Diagnostics;
using System.Net;
using TokenBroker.Demo;
using TokenBroker.Hosting;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Configuration;

[TestFixture]
public sealed class ConfigFileTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("tb-config-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    [Test]
    public async Task JsonConfigFile_IsApplied()
    {
        var file = Path.Combine(_dir, "broker.json");
        File.WriteAllText(file, """{ "TokenBroker": { "Issuer": "https://sts.example.com", "Exchange": { "RetryAfterSeconds": 7 } } }""");

        var built = BrokerApp.Build(new BrokerAppOptions { ConfigFile = file });

        Assert.That(built.Errors, Is.Empty);
        Assert.That(built.Settings!.Issuer, Is.EqualTo("https://sts.example.com"));
        Assert.That(built.Settings.Exchange.RetryAfterSeconds, Is.EqualTo(7));
        Assert.That(built.Settings.Providers.Single(p => p.Name == "github").Audience, Is.EqualTo("https://sts.example.com"), "provider audience defaults to the issuer");
        await built.App!.DisposeAsync();
    }

    [Test]
    public async Task YamlConfigFile_IsApplied_AndArgumentsOverrideIt()
    {
        var rules = Path.Combine(_dir, "corp.yaml");
        File.WriteAllText(rules, """
            rules:
              - id: corp-read
                provider: gitlab-corp
                when: { repository_id: "1" }
                grant: { audiences: [https://x.example], stage: read, subject: "corp:{repository}" }
            """);
        var file = Path.Combine(_dir, "broker.yaml");
        File.WriteAllText(file, $"""
            TokenBroker:
              Issuer: https://sts.example.com
              Providers:
                gitlab-corp:
                  Kind: gitlab
                  Issuer: https://gitlab.corp.example
                  Audience: https://sts.example.com/gitlab
              Rules:
                Paths: [{rules}]
              Limits:
                MaxFormFields: 20
            """);

        var built = BrokerApp.Build(new BrokerAppOptions { ConfigFile = file, Args = ["--TokenBroker:Limits:MaxFormFields=24"] });

        Assert.That(built.Errors, Is.Empty, string.Join("\n", built.Errors));
        var provider = built.Settings!.Providers.Single();
        Assert.That(provider.Name, Is.EqualTo("gitlab-corp"));
        Assert.That(provider.Descriptor.SharedIssuer, Is.False, "a self-managed GitLab is not a shared issuer");
        Assert.That(provider.Audience, Is.EqualTo("https://sts.example.com/gitlab"));
        Assert.That(built.Settings.Limits.MaxFormFields, Is.EqualTo(24));
        await built.App!.DisposeAsync();
    }

    [Test]
    public void InvalidJsonConfigFile_IsAReportedError()
    {
        var file = Path.Combine(_dir, "broker.json");
        File.WriteAllText(file, "{ not json");

        var built = BrokerApp.Build(new BrokerAppOptions { ConfigFile = file });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors.Single(), Does.Contain("not valid JSON"));
    }

    [Test]
    public async Task EnvironmentVariables_ConfigureTheBroker()
    {
        Environment.SetEnvironmentVariable("TokenBroker__Exchange__RetryAfterSeconds", "9");
        try
        {
            var built = BrokerApp.Build(new BrokerAppOptions());
            Assert.That(built.Settings!.Exchange.RetryAfterSeconds, Is.EqualTo(9));
            await built.App!.DisposeAsync();
        }
        finally
        {
            Environment.SetEnvironmentVariable("TokenBroker__Exchange__RetryAfterSeconds", null);
        }
    }

    [Test]
    public async Task TokenbrokerWithNoConfiguration_ServesTheEmbeddedDefaultAndWarns()
    {
        var port = FakeCiIssuer.FreePort();
        var dll = typeof(BrokerApp).Assembly.Location;
        using var process = Process.Start(new ProcessStartInfo("dotnet", [dll, "--urls", $"http://127.0.0.1:{port}"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            WorkingDirectory = _dir,
        })!;
        var stderr = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (stderr) { stderr.AppendLine(e.Data); } };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            HttpStatusCode? status = null;
            var body = string.Empty;
            for (var i = 0; i < 100 && status is null; i++)
            {
                try
                {
                    using var ready = await client.GetAsync(new Uri("/readyz", UriKind.Relative));
                    status = ready.StatusCode;
                    body = await ready.Content.ReadAsStringAsync();
                }
                catch (HttpRequestException)
                {
                    await Task.Delay(200);
                }
            }

            // The embedded default trusts github.com and gitlab.com. Without egress to them (as in CI sandboxes) no
            // provider has keys and the broker is rightly not ready; that must be the only reason.
            Assert.That(status == HttpStatusCode.OK || (status == HttpStatusCode.ServiceUnavailable && body.StartsWith("providers: no provider's keys could be fetched\n", StringComparison.Ordinal)), Is.True, body);
            var metadata = await client.GetStringAsync(new Uri("/.well-known/openid-configuration", UriKind.Relative));
            Assert.That(metadata, Does.Contain($"\"issuer\": \"http://127.0.0.1:{port}\""));
            lock (stderr)
            {
                Assert.That(stderr.ToString(), Does.Contain("DEVELOPMENT SETUP"));
            }
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    [Test]
    public async Task IssuerWithPath_ServesDiscoveryUnderThatPath()
    {
        var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
        var url = $"http://127.0.0.1:{FakeCiIssuer.FreePort()}";
        var settings = DemoCommand.DemoSettings(issuer, url);
        settings["TokenBroker:Issuer"] = url + "/sts";
        settings["TokenBroker:Providers:github:Audience"] = url + "/sts";
        var built = BrokerApp.Build(new BrokerAppOptions { Overrides = settings });
        await using var app = built.App!;
        await app.StartAsync();
        await using var _ = issuer;
        using var client = new HttpClient();

        var metadata = await client.GetStringAsync(new Uri(url + "/sts/.well-known/openid-configuration"));
        var jwks = await client.GetAsync(new Uri(url + "/sts/.well-known/jwks.json"));

        Assert.That(metadata, Does.Contain($"\"jwks_uri\": \"{url}/sts/.well-known/jwks.json\""));
        Assert.That(jwks.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }
}
