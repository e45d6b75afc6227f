using TokenBroker.Cli;
using TokenBroker.Hosting;
using TokenBroker.Security;
using TokenBroker.Testing;

namespace TokenBroker.Tests.Configuration;

[TestFixture]
public sealed class StateConfigurationTests
{
    private static BrokerBuildResult Build(Dictionary<string, string?> settings) =>
        BrokerApp.Build(new BrokerAppOptions { Overrides = settings, MinimumLogLevel = LogLevel.Warning });

    [Test]
    public void TheRedisStore_WithBadSettings_ReportsEveryProblemAtOnce()
    {
        var built = Build(new()
        {
            ["TokenBroker:State:Store"] = "redis",
            ["TokenBroker:State:Redis:KeyPrefix"] = "bad prefix{}",
            ["TokenBroker:State:Redis:OperationTimeout"] = "00:01:00",
            ["TokenBroker:State:Redis:BreakDuration"] = "00:00:00",
            ["TokenBroker:State:BlockSyncInterval"] = "00:00:05",
            ["TokenBroker:State:MaxBlockStaleness"] = "00:00:06",
        });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains("State:Redis:Endpoints"));
        Assert.That(built.Errors, Has.Some.Contains("State:Redis:KeyPrefix"));
        Assert.That(built.Errors, Has.Some.Contains("State:Redis:OperationTimeout"));
        Assert.That(built.Errors, Has.Some.Contains("State:Redis:BreakDuration"));
        Assert.That(built.Errors, Has.Some.Contains("State:MaxBlockStaleness"));
    }

    [Test]
    public void AnUnknownStoreOrRedisKey_IsAnError()
    {
        var built = Build(new()
        {
            ["TokenBroker:State:Store"] = "etcd",
            ["TokenBroker:State:Redis:Endpoint"] = "127.0.0.1:6379",
        });

        Assert.That(built.Errors, Has.Some.Contains("State:Store 'etcd' is not supported"));
        Assert.That(built.Errors, Has.Some.Contains("unknown setting 'Endpoint'"));
    }

    [Test]
    public void TheRedisStore_WithAnEndpoint_BuildsWithoutTheInMemoryWarning()
    {
        var built = Build(new()
        {
            ["TokenBroker:State:Store"] = "redis",
            ["TokenBroker:State:Redis:Endpoints:0"] = "127.0.0.1:1",
        });

        Assert.That(built.Errors, Is.Empty);
        Assert.That(built.Warnings, Has.None.Contains("State is kept in memory"));
        Assert.That(built.Settings!.State.Redis.OperationTimeout, Is.EqualTo(TimeSpan.FromMilliseconds(250)));
    }

    [Test]
    public void SentinelSettings_ThatConflictOrAreIncomplete_AreEveryOneReported()
    {
        var built = Build(new()
        {
            ["TokenBroker:State:Store"] = "redis",
            ["TokenBroker:State:Redis:Endpoints:0"] = "127.0.0.1:6379",
            ["TokenBroker:State:Redis:Sentinels:0"] = "127.0.0.1:26379",
            ["TokenBroker:State:Redis:Sentinels:1"] = "sentinel-1:notaport",
            ["TokenBroker:State:Redis:MasterCheckInterval"] = "00:00:00.010",
        });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains("State:Redis:Endpoints and State:Redis:Sentinels exclude each other"));
        Assert.That(built.Errors, Has.Some.Contains("State:Redis:Sentinels:1 'sentinel-1:notaport' is not host:port"));
        Assert.That(built.Errors, Has.Some.Contains("State:Redis:ServiceName is required"));
        Assert.That(built.Errors, Has.Some.Contains("State:Redis:MasterCheckInterval"));
    }

    [Test]
    public void SentinelOnlySettings_WithoutSentinels_AreErrors()
    {
        var built = Build(new()
        {
            ["TokenBroker:State:Store"] = "redis",
            ["TokenBroker:State:Redis:Endpoints:0"] = "127.0.0.1:6379",
            ["TokenBroker:State:Redis:ServiceName"] = "mymaster",
            ["TokenBroker:State:Redis:SentinelPassword"] = "x",
            ["TokenBroker:State:Redis:SentinelSsl"] = "true",
        });

        Assert.That(built.Errors, Has.Some.Contains("State:Redis:ServiceName applies only with State:Redis:Sentinels"));
        Assert.That(built.Errors, Has.Some.Contains("State:Redis:SentinelPassword applies only with State:Redis:Sentinels"));
        Assert.That(built.Errors, Has.Some.Contains("State:Redis:SentinelSsl applies only with State:Redis:Sentinels"));
    }

    [Test]
    public void TheRedisStore_WithSentinelsAndAServiceName_Builds()
    {
        var built = Build(new()
        {
            ["TokenBroker:State:Store"] = "redis",
            ["TokenBroker:State:Redis:Sentinels:0"] = "127.0.0.1:1",
            ["TokenBroker:State:Redis:Sentinels:1"] = "sentinel-1",
            ["TokenBroker:State:Redis:ServiceName"] = "tokenbroker",
        });

        Assert.That(built.Errors, Is.Empty);
        Assert.That(built.Settings!.State.Redis.ServiceName, Is.EqualTo("tokenbroker"));
        Assert.That(built.Settings.State.Redis.MasterCheckInterval, Is.EqualTo(TimeSpan.FromSeconds(1)));
        Assert.That(TokenBroker.State.Redis.RedisStateStore.ParseEndPoint("sentinel-1", TokenBroker.State.Redis.RedisStateStore.DefaultSentinelPort).ToString(), Does.EndWith(":26379"));
    }

    [Test]
    public void RedisTlsFiles_WithoutTls_AreErrors()
    {
        using var pki = new TestPki();
        var built = Build(RedisWithTlsFiles(pki, ssl: false, out _));

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.StartsWith("State:Redis:CaCertificateFile applies only with TLS"));
        Assert.That(built.Errors, Has.Some.StartsWith("State:Redis:ClientCertificateFile applies only with TLS"));
        Assert.That(built.Errors, Has.Some.StartsWith("State:Redis:ClientKeyFile applies only with TLS"));
        Assert.That(built.Errors, Has.Count.EqualTo(3), "the files themselves are fine");
    }

    [Test]
    public void RedisTlsFiles_ThatAreMissingUnparsableOrIncomplete_AreEveryOneReported()
    {
        using var pki = new TestPki();
        var notPem = Path.Combine(pki.Directory, "not-a-certificate.pem");
        File.WriteAllText(notPem, "hello\n");
        var ca = pki.CreateCa("ca");
        var (cert, _) = ca.Issue("client", [], [], server: false);
        var built = Build(new()
        {
            ["TokenBroker:State:Store"] = "redis",
            ["TokenBroker:State:Redis:Sentinels:0"] = "127.0.0.1:26379",
            ["TokenBroker:State:Redis:ServiceName"] = "tokenbroker",
            ["TokenBroker:State:Redis:SentinelSsl"] = "true",
            ["TokenBroker:State:Redis:CaCertificateFile"] = notPem,
            ["TokenBroker:State:Redis:ClientCertificateFile"] = cert,
            ["TokenBroker:State:Redis:KeyPrefix"] = "bad prefix",
        });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.StartsWith($"State:Redis:CaCertificateFile '{notPem}' cannot be used: the file holds no PEM certificate"));
        Assert.That(built.Errors, Has.Some.StartsWith("State:Redis:ClientCertificateFile and State:Redis:ClientKeyFile go together"));
        Assert.That(built.Errors, Has.Some.StartsWith("State:Redis:KeyPrefix"));
    }

    public static IEnumerable<TestCaseData> UnusableTlsFiles()
    {
        yield return new TestCaseData("missing-ca").SetName("ARedisCaFile_ThatDoesNotExist_IsAnError");
        yield return new TestCaseData("key-without-cert").SetName("ARedisClientKey_WithoutItsCertificate_IsAnError");
        yield return new TestCaseData("mismatched-key").SetName("ARedisClientCertificate_WithAnotherCertificatesKey_IsAnError");
        yield return new TestCaseData("missing-key").SetName("ARedisClientKeyFile_ThatDoesNotExist_IsAnError");
    }

    [TestCaseSource(nameof(UnusableTlsFiles))]
    public void UnusableRedisTlsFiles_AreConfigurationErrors(string which)
    {
        using var pki = new TestPki();
        var ca = pki.CreateCa("ca");
        var (cert, key) = ca.Issue("client", [], [], server: false);
        var (_, otherKey) = ca.Issue("other", [], [], server: false);
        var missing = Path.Combine(pki.Directory, "missing.pem");
        var settings = new Dictionary<string, string?>
        {
            ["TokenBroker:State:Store"] = "redis",
            ["TokenBroker:State:Redis:Endpoints:0"] = "127.0.0.1:6379",
            ["TokenBroker:State:Redis:Ssl"] = "true",
        };
        var (files, expected) = which switch
        {
            "missing-ca" => (new (string Name, string Value)[] { ("CaCertificateFile", missing) }, $"State:Redis:CaCertificateFile '{missing}' cannot be used"),
            "key-without-cert" => ([("ClientKeyFile", key)], "State:Redis:ClientCertificateFile and State:Redis:ClientKeyFile go together"),
            "mismatched-key" => ([("ClientCertificateFile", cert), ("ClientKeyFile", otherKey)], $"State:Redis:ClientCertificateFile '{cert}' with State:Redis:ClientKeyFile '{otherKey}' cannot be used"),
            "missing-key" => ([("ClientCertificateFile", cert), ("ClientKeyFile", missing)], $"State:Redis:ClientCertificateFile '{cert}' with State:Redis:ClientKeyFile '{missing}' cannot be used"),
            _ => throw new ArgumentOutOfRangeException(nameof(which)),
        };
        foreach (var (name, value) in files)
        {
            settings["TokenBroker:State:Redis:" + name] = value;
        }

        var built = Build(settings);

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Count.EqualTo(1), string.Join("\n", built.Errors));
        Assert.That(built.Errors[0], Does.StartWith(expected));
    }

    [Test]
    public void RedisTlsFiles_ThatLoad_Build()
    {
        using var pki = new TestPki();
        var built = Build(RedisWithTlsFiles(pki, ssl: true, out var caFile));

        Assert.That(built.Errors, Is.Empty);
        Assert.That(built.Settings!.State.Redis.CaCertificateFile, Is.EqualTo(caFile));
    }

    /// <summary>A single-server Redis store with a CA file and a client certificate and key that all load.</summary>
    private static Dictionary<string, string?> RedisWithTlsFiles(TestPki pki, bool ssl, out string caFile)
    {
        var ca = pki.CreateCa("ca");
        var (cert, key) = ca.Issue("client", [], [], server: false);
        caFile = ca.CertificateFile;
        var settings = new Dictionary<string, string?>
        {
            ["TokenBroker:State:Store"] = "redis",
            ["TokenBroker:State:Redis:Endpoints:0"] = "127.0.0.1:6379",
            ["TokenBroker:State:Redis:CaCertificateFile"] = ca.CertificateFile,
            ["TokenBroker:State:Redis:ClientCertificateFile"] = cert,
            ["TokenBroker:State:Redis:ClientKeyFile"] = key,
        };
        if (ssl)
        {
            settings["TokenBroker:State:Redis:Ssl"] = "true";
        }

        return settings;
    }

    [Test]
    public void CredentialLines_ThatAreMalformedDuplicatedOrSecrets_AreErrors()
    {
        var (secret, line) = CredentialHash.Create("ops");
        var built = Build(new()
        {
            ["TokenBroker:Admin:Credentials:0"] = line,
            ["TokenBroker:Admin:Credentials:1"] = line,
            ["TokenBroker:Admin:Credentials:2"] = secret,
            ["TokenBroker:Introspection:Credentials:0"] = "api:sha256:00:00",
            ["TokenBroker:Introspection:CredentialsFile"] = "/nonexistent/credentials",
        });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains("Admin:Credentials:1: credential name 'ops' is used twice"));
        Assert.That(built.Errors, Has.Some.Contains("Admin:Credentials:2: looks like a secret"));
        Assert.That(built.Errors, Has.Some.Contains("Introspection:Credentials:0"));
        Assert.That(built.Errors, Has.Some.Contains("Introspection:CredentialsFile '/nonexistent/credentials' cannot be read"));
        Assert.That(string.Join('\n', built.Errors), Does.Not.Contain(secret[4..]), "a misplaced secret is not echoed");
    }

    [Test]
    public async Task ACredentialsFile_IsRead_SkippingCommentsAndBlankLines()
    {
        var (_, line) = CredentialHash.Create("from-file");
        var file = Path.GetTempFileName();
        await File.WriteAllTextAsync(file, $"# admin credentials\n\n{line}\n");
        try
        {
            var built = Build(new() { ["TokenBroker:Admin:CredentialsFile"] = file });

            Assert.That(built.Errors, Is.Empty);
            Assert.That(built.Settings!.AdminCredentials.Select(c => c.Name), Is.EqualTo(new[] { "from-file" }));
            await built.App!.DisposeAsync();
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Test]
    public void CredentialsCreate_PrintsASecretOnce_AndAHashLineThatAcceptsOnlyThatSecret()
    {
        using var output = new StringWriter();
        using var error = new StringWriter();

        var code = CredentialsCommand.Create("ci-admin", output, error);

        Assert.That(code, Is.EqualTo(BrokerCli.Ok));
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var secret = lines[0][(lines[0].LastIndexOf(' ') + 1)..].Trim();
        var hashLine = lines[1][(lines[1].LastIndexOf(' ') + 1)..].Trim();
        var credential = CredentialHash.Parse(hashLine, out var parseError);
        Assert.That(parseError, Is.Null);
        Assert.That(credential!.Name, Is.EqualTo("ci-admin"));
        Assert.That(secret, Does.StartWith("tbs_").And.Length.EqualTo(47));
        Assert.That(hashLine, Does.Not.Contain(secret[4..]));
        Assert.That(credential.Matches(secret), Is.True);
        Assert.That(credential.Matches(secret[..^1] + (secret[^1] == 'A' ? 'B' : 'A')), Is.False);
    }

    [Test]
    public void CredentialsCreate_WithABadName_IsAUsageError()
    {
        using var output = new StringWriter();
        using var error = new StringWriter();

        Assert.That(CredentialsCommand.Create("no spaces", output, error), Is.EqualTo(BrokerCli.Usage));
        Assert.That(output.ToString(), Is.Empty);
    }
}
