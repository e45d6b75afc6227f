using TokenBroker.Hosting;

namespace TokenBroker.Tests.Rules;

/// <summary>The broker lints its rules at start-up: lint errors stop the start, warnings are reported.</summary>
[TestFixture]
public sealed class StartupLintTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("tb-lint-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private BrokerBuildResult Build(string rules)
    {
        var file = Path.Combine(_dir, "rules.yaml");
        File.WriteAllText(file, rules);
        return BrokerApp.Build(new BrokerAppOptions { Overrides = new Dictionary<string, string?> { ["TokenBroker:Rules:Paths:0"] = file } });
    }

    [Test]
    public void ALintError_StopsTheStart_WithItsPositionAndId()
    {
        var built = Build("""
            rules:
              - id: deploy
                provider: github
                when: { owner_id: "5001", repository_id: "1", ref: refs/heads/main }
                grant: { audiences: [sts.amazonaws.com], stage: deploy, subject: "repo:{repository}" }
              - id: pr-plan
                provider: github
                when: { owner_id: "5001", repository_id: "1", event: pull_request }
                grant: { audiences: [sts.amazonaws.com], stage: read, subject: "repo:{repository}" }
            """);

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.One.Contains("rules.yaml:6:5: error TB2104:"));
    }

    [Test]
    public async Task ALintWarning_IsReported_AndTheBrokerStarts()
    {
        var built = Build("""
            rules:
              - id: named
                provider: github
                when: { owner_id: "5001", repository: octo-org/payments }
                grant: { audiences: [https://deploy.internal], stage: deploy, subject: "repo:{repository}" }
            """);

        Assert.That(built.Errors, Is.Empty, string.Join("\n", built.Errors));
        Assert.That(built.App, Is.Not.Null);
        Assert.That(built.Warnings, Has.One.Contains("warning TB2101:").And.Contain("'named'"));
        await built.App!.DisposeAsync();
    }
}
