using TokenBroker.Cli;
using TokenBroker.Demo;

namespace TokenBroker.Tests.Cli;

[TestFixture]
public sealed class CliTests
{
    [Test]
    public async Task Demo_PrintsAnIssuedTokenAndRefusals_AndExitsZero()
    {
        using var output = new StringWriter();

        var code = await DemoCommand.RunAsync(serve: false, output, CancellationToken.None);

        var text = output.ToString();
        Assert.That(code, Is.EqualTo(0), text);
        Assert.That(text, Does.Contain("200 OK"));
        Assert.That(text, Does.Contain("matched rule: payments-deploy-prod"));
        Assert.That(text, Does.Contain("\"sub\": \"github:octo-org/payments:production\""));
        Assert.That(text, Does.Contain("error_id=TB1201"));
        Assert.That(text, Does.Contain("error_id=TB1118"));
        Assert.That(text, Does.Not.Match(@"eyJ[A-Za-z0-9_-]{10,}\.eyJ"), "the demo prints decoded claims, never a raw token");
    }

    [Test]
    public async Task UnknownOption_IsAUsageError()
    {
        var code = await BrokerCli.RunAsync(["demo", "--no-such-option"]);

        Assert.That(code, Is.EqualTo(BrokerCli.Usage));
    }

    [Test]
    public async Task Serve_WithInvalidConfiguration_ExitsWithUsageErrorBeforeListening()
    {
        var code = await BrokerCli.RunAsync(["serve", "--config", "/nonexistent/tokenbroker.json"]);

        Assert.That(code, Is.EqualTo(BrokerCli.Usage));
    }

    [TestCase("rules", "validate")]
    [TestCase("serve", "extra")]
    [TestCase("--TokenBroker:Issuer")]
    public async Task UnknownWords_AreUsageErrors_NotAServerStart(params string[] args)
    {
        var code = await BrokerCli.RunAsync(args);

        Assert.That(code, Is.EqualTo(BrokerCli.Usage));
    }

    [Test]
    public void ConfigurationArguments_AreAccepted()
    {
        Assert.That(BrokerCli.CheckConfigurationArguments(["--TokenBroker:Issuer=https://a", "--TokenBroker:Limits:MaxClaims", "50"]), Is.Null);
    }
}
