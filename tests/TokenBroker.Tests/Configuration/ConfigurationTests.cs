using TokenBroker.Configuration;
using TokenBroker.Hosting;

namespace TokenBroker.Tests.Configuration;

[TestFixture]
public sealed class ConfigurationTests
{
    private static BrokerBuildResult Build(Dictionary<string, string?> settings) =>
        BrokerApp.Build(new BrokerAppOptions { Overrides = settings, MinimumLogLevel = LogLevel.Warning });

    [Test]
    public async Task NoConfiguration_BuildsTheEmbeddedDevelopmentDefault()
    {
        var built = Build([]);

        Assert.That(built.Errors, Is.Empty);
        Assert.That(built.App, Is.Not.Null);
        Assert.That(built.Settings!.Issuer, Is.EqualTo("http://127.0.0.1:8080"));
        Assert.That(built.Settings.Providers.Select(p => p.Issuer), Is.EquivalentTo(new[] { SettingsResolver.GitHubIssuer, SettingsResolver.GitLabComIssuer }));
        Assert.That(built.Settings.Providers.All(p => p.Descriptor.SharedIssuer), Is.True);
        Assert.That(built.Warnings, Has.Some.Contains("generated in memory"));
        Assert.That(built.Warnings, Has.Some.Contains("in memory"));
        await built.App!.DisposeAsync();
    }

    [Test]
    public void InvalidSettings_AreAllReportedAtOnce()
    {
        var built = Build(new()
        {
            ["TokenBroker:Issuer"] = "http://broker.example.com",
            ["TokenBroker:Providers:corp:Kind"] = "oidc",
            ["TokenBroker:Providers:corp:Issuer"] = "http://idp.example.com",
            ["TokenBroker:Limits:MaxFormFields"] = "1",
            ["TokenBroker:Exchange:ClockSkew"] = "00:05:00",
        });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains("Issuer"));
        Assert.That(built.Errors, Has.Some.Contains("Providers:corp:Issuer must use https"));
        Assert.That(built.Errors, Has.Some.Contains("Limits:MaxFormFields"));
        Assert.That(built.Errors, Has.Some.Contains("Exchange:ClockSkew"));
    }

    [Test]
    public void UnknownSettingKey_IsAnError()
    {
        var built = Build(new() { ["TokenBroker:Limits:MaxFormFeilds"] = "10" });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains("MaxFormFeilds"));
    }

    [Test]
    public void SeveralUnknownKeysAndBadValues_AreAllReported()
    {
        var built = Build(new()
        {
            ["TokenBroker:Limits:MaxFormFeilds"] = "10",
            ["TokenBroker:Signing:Keyz:0:Path"] = "x",
            ["TokenBroker:Providers:github:Kind"] = "github",
            ["TokenBroker:Providers:github:Issuer"] = SettingsResolver.GitHubIssuer,
            ["TokenBroker:Providers:github:Audiance"] = "x",
            ["TokenBroker:Exchange:RetryAfterSeconds"] = "soon",
            ["TokenBroker:Rules:MaxTtl"] = "forever",
        });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains("MaxFormFeilds"));
        Assert.That(built.Errors, Has.Some.Contains("Keyz"));
        Assert.That(built.Errors, Has.Some.Contains("Audiance"));
        Assert.That(built.Errors, Has.Some.Contains("TokenBroker:Exchange"));
        Assert.That(built.Errors, Has.Some.Contains("TokenBroker:Rules"));
    }

    [Test]
    public void WildcardListenAddressWithoutIssuer_IsAnError()
    {
        var built = Build(new() { ["urls"] = "http://0.0.0.0:8080" });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains("set TokenBroker:Issuer"));
    }

    [Test]
    public void TwoProvidersWithOneIssuer_IsAnError()
    {
        var built = Build(new()
        {
            ["TokenBroker:Providers:a:Kind"] = "github",
            ["TokenBroker:Providers:a:Issuer"] = SettingsResolver.GitHubIssuer,
            ["TokenBroker:Providers:b:Kind"] = "github",
            ["TokenBroker:Providers:b:Issuer"] = SettingsResolver.GitHubIssuer,
        });

        Assert.That(built.Errors, Has.Some.Contains("same issuer"));
    }

    [Test]
    public void RulesWithErrors_StopStartUpNamingFileLineAndColumn()
    {
        var dir = Directory.CreateTempSubdirectory("tb-rules-");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "bad.yaml"), "rules:\n  - id: x\n    provider: github\n    when: { repository_id: \"1\" }\n    grant: { audiences: [a], stage: deploy, subject: s }\n");
            var built = Build(new() { ["TokenBroker:Rules:Paths:0"] = dir.FullName });

            Assert.That(built.App, Is.Null);
            Assert.That(built.Errors, Has.Some.Match(@"bad\.yaml:4:\d+: error TB2016"), string.Join("\n", built.Errors));
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Test]
    public void MissingSigningKeyFile_IsAnError()
    {
        var built = Build(new() { ["TokenBroker:Signing:Keys:0:Path"] = "/nonexistent/key.pem" });

        Assert.That(built.Errors, Has.Some.Contains("/nonexistent/key.pem"));
    }
}
