using System.Text.Json.Nodes;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Cli;
using TokenBroker.Signing;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Cli;

[TestFixture]
public sealed class KeysCommandTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("tb-keys-cli-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = await BrokerCli.RunAsync(args, output, error, TimeProvider.System);
        return (code, output.ToString(), error.ToString());
    }

    private string Config(string json)
    {
        var path = Path.Combine(_dir, "tokenbroker.json");
        File.WriteAllText(path, json);
        return path;
    }

    private async Task<string> GeneratedKeyAsync(string name)
    {
        var path = Path.Combine(_dir, name + ".pem");
        var (code, _, err) = await RunAsync("keys", "generate", "--out", path);
        Assert.That(code, Is.EqualTo(0), err);
        return path;
    }

    [Test]
    public async Task Generate_WritesAPrivateKeyReadableOnlyByTheOwner_AndPrintsItsThumbprint()
    {
        var path = Path.Combine(_dir, "signing.pem");

        var (code, output, _) = await RunAsync("keys", "generate", "--algorithm", "ES384", "--out", path);

        Assert.That(code, Is.EqualTo(BrokerCli.Ok));
        if (!OperatingSystem.IsWindows())
        {
            Assert.That(File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        }

        using var signer = LocalKeySigner.FromPemFile(path, "ES384");
        Assert.That(output, Does.Contain(signer.KeyId));
        Assert.That(output, Does.Not.Contain("PRIVATE KEY"));
    }

    [Test]
    public async Task Generate_NeverOverwritesAnExistingFile()
    {
        var path = Path.Combine(_dir, "existing.pem");
        await File.WriteAllTextAsync(path, "keep me");

        var (code, _, error) = await RunAsync("keys", "generate", "--out", path);

        Assert.That(code, Is.EqualTo(BrokerCli.Failed));
        Assert.That(error, Does.Contain("already exists"));
        Assert.That(await File.ReadAllTextAsync(path), Is.EqualTo("keep me"));
    }

    [TestCase("keys", "generate", "--algorithm", "HS256", "--out", "x.pem")]
    [TestCase("keys", "generate")]
    [TestCase("keys", "rotate")]
    [TestCase("keys", "list", "--at", "yesterday")]
    public async Task BadArguments_AreUsageErrors(params string[] args)
    {
        Assert.That((await RunAsync(args)).Code, Is.EqualTo(BrokerCli.Usage));
    }

    [Test]
    public async Task Jwks_PrintsWhatTheConfigurationPublishesAtAGivenTime()
    {
        var config = Config($$"""
            {"TokenBroker": {"Signing": {"Keys": [
              {"Path": "{{await GeneratedKeyAsync("a")}}", "KeyId": "a"},
              {"Path": "{{await GeneratedKeyAsync("b")}}", "KeyId": "b", "ActivateAt": "2030-01-01T00:00:00Z"}
            ] } } }
            """);

        var before = await RunAsync("keys", "jwks", "--config", config, "--at", "2029-12-31T23:00:00Z");
        var announced = await RunAsync("keys", "jwks", "--config", config, "--at", "2029-12-31T23:55:00Z");
        var after = await RunAsync("keys", "jwks", "--config", config, "--at", "2030-01-01T02:00:00Z");

        static string[] Kids(string json) => JsonNode.Parse(json)!["keys"]!.AsArray().Select(k => k!["kid"]!.GetValue<string>()).ToArray();
        Assert.That(before.Code, Is.EqualTo(0), before.Err);
        Assert.That(Kids(before.Out), Is.EqualTo(new[] { "a" }));
        Assert.That(Kids(announced.Out), Is.EqualTo(new[] { "a", "b" }));
        Assert.That(Kids(after.Out), Is.EqualTo(new[] { "b" }));
        Assert.That(before.Out, Does.Not.Contain("\"d\""));
        Assert.That(before.Err, Does.Contain("max-age=300"));
    }

    [Test]
    public async Task List_ShowsEachKeysStateAndDates_WithoutOpeningKeys()
    {
        var config = Config($$"""
            {"TokenBroker": {"Signing": {"Keys": [
              {"Path": "{{await GeneratedKeyAsync("a")}}", "KeyId": "a"},
              {"Path": "{{await GeneratedKeyAsync("b")}}", "KeyId": "b", "ActivateAt": "2030-01-01T00:00:00Z"},
              {"Source": "pkcs11", "Uri": "pkcs11:token=nowhere;object=x", "PinEnvironmentVariable": "PATH", "Algorithm": "RS256", "KeyId": "hsm"}
            ] } } }
            """);

        var (code, output, error) = await RunAsync("keys", "list", "--config", config, "--at", "2030-01-01T00:30:00Z");

        Assert.That(code, Is.EqualTo(0), error);
        var lines = output.Split('\n');
        Assert.That(lines.Single(l => l.StartsWith("Signing:Keys:0 ", StringComparison.Ordinal)), Does.Contain("retired").And.Contain("2030-01-01T00:00:00Z").And.Contain("2030-01-01T01:05:30Z"), "removal: retirement + Rules:MaxTtl 1 h + max-age 5 min + skew 30 s");
        Assert.That(lines.Single(l => l.StartsWith("Signing:Keys:1 ", StringComparison.Ordinal)), Does.Contain("active").And.Contain("2029-12-31T23:50:00Z"));
        Assert.That(lines.Single(l => l.StartsWith("Signing:Keys:2 ", StringComparison.Ordinal)), Does.Contain("active").And.Contain("pkcs11:token=nowhere;object=x"));
    }

    [Test]
    public async Task InvalidConfiguration_IsAUsageErrorListingEveryProblem()
    {
        var config = Config("""{"TokenBroker": {"Signing": {"Keys": [{"Source": "pkcs11"}], "AnnouncementLeadTime": "00:00:01"}}}""");

        var (code, _, error) = await RunAsync("keys", "list", "--config", config);

        Assert.That(code, Is.EqualTo(BrokerCli.Usage));
        Assert.That(error, Does.Contain("Uri is required").And.Contain("AnnouncementLeadTime"));
    }

    [Test]
    public async Task Check_OpensEveryKey_LogsInToTheHsm_AndSignsAndVerifiesATestPayload()
    {
        var hsm = SoftHsm.Shared;
        var config = Config($$"""
            {"TokenBroker": {"Signing": {"Keys": [
              {"Source": "pkcs11", "Uri": "{{SoftHsm.UriFor("ES256")}}", "PinFile": "{{hsm.PinFile}}"},
              {"Source": "pkcs11", "Uri": "{{SoftHsm.UriFor("RS256")}}", "PinFile": "{{hsm.PinFile}}", "Algorithm": "PS256"},
              {"Path": "{{await GeneratedKeyAsync("local")}}", "Algorithm": "ES256", "ActivateAt": "2030-01-01T00:00:00Z"}
            ] } } }
            """);

        var (code, output, error) = await RunAsync("keys", "check", "--config", config);

        Assert.That(code, Is.EqualTo(BrokerCli.Ok), output + error);
        Assert.That(output, Does.Contain($"ok   Signing:Keys:0 ES256 {SoftHsm.UriFor("ES256")}").And.Contain("signed and verified"));
        Assert.That(output, Does.Contain($"ok   Signing:Keys:1 PS256 {SoftHsm.UriFor("RS256")}"));
        Assert.That(output, Does.Contain("ok   Signing:Keys:2 ES256"));
    }

    [Test]
    public async Task Check_ReportsAnUnreachableHsmKey_AndExitsOne()
    {
        var hsm = SoftHsm.Shared;
        var config = Config($$"""
            {"TokenBroker": {"Signing": {"Keys": [
              {"Path": "{{await GeneratedKeyAsync("local")}}"},
              {"Source": "pkcs11", "Uri": "pkcs11:token={{SoftHsm.Token}};object=destroyed-key", "PinFile": "{{hsm.PinFile}}", "Algorithm": "RS256"}
            ] } } }
            """);

        var (code, output, _) = await RunAsync("keys", "check", "--config", config);

        Assert.That(code, Is.EqualTo(BrokerCli.Failed));
        Assert.That(output, Does.Contain("ok   Signing:Keys:0"));
        Assert.That(output, Does.Contain("FAIL Signing:Keys:1 RS256 pkcs11:token=tb;object=destroyed-key"));
        Assert.That(output, Does.Not.Contain(SoftHsm.Pin + "\n").And.Not.Contain("pin-source"));
    }

    [Test]
    public async Task Bench_ReportsSignaturesPerSecondForLocalAndHsmKeys()
    {
        var hsm = SoftHsm.Shared;
        var config = Config($$"""
            {"TokenBroker": {"Signing": {"Keys": [
              {"Source": "pkcs11", "Uri": "{{SoftHsm.UriFor("ES256")}}", "PinFile": "{{hsm.PinFile}}"}
            ] } } }
            """);

        var (code, output, error) = await RunAsync("keys", "bench", "--config", config, "--seconds", "0.2");

        Assert.That(code, Is.EqualTo(BrokerCli.Ok), output + error);
        Assert.That(output, Does.Match(@"local ES256\s+\d+ /s"));
        Assert.That(output, Does.Match(@"local RS256 \(2048\)\s+\d+ /s"));
        Assert.That(output, Does.Match(@"pkcs11 ES256 pkcs11:token=tb;object=ec256\s+[1-9]\d* /s"));
    }
}
