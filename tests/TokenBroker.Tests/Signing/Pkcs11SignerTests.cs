using System.Net;
using System.Runtime.Versioning;
using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Hosting;
using TokenBroker.Signing;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Signing;

/// <summary>The HSM signer against a real SoftHSM2 token: key custody, PIN handling and start-up errors.</summary>
[TestFixture]
[SupportedOSPlatform("linux")]
public sealed class Pkcs11SignerTests
{
    private SoftHsm _hsm = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Ignore("PKCS#11 signing is Linux only");
        }

        _hsm = SoftHsm.Shared;
    }

    private Pkcs11Signer Open(string uri, string algorithm = "ES256", Func<string>? pin = null) =>
        Pkcs11Signer.Open("Signing:Keys:0", uri, pin ?? Pkcs11Signer.PinFromFile(_hsm.PinFile), algorithm, null, TimeProvider.System, TimeSpan.FromSeconds(1));

    [Test]
    public void PrivateKey_CannotBeExportedFromTheHsm()
    {
        using var handle = SafeEvpPKeyHandle.OpenPrivateKeyFromEngine("pkcs11", $"{SoftHsm.UriFor("ES256")};type=private;pin-source=file:{_hsm.PinFile}");
        using var ec = new ECDsaOpenSsl(handle);

        Assert.That(ec.ExportParameters(false).Q.X, Has.Length.EqualTo(32), "the public half is readable");
        Assert.Throws(Is.InstanceOf<CryptographicException>(), () => ec.ExportParameters(true));
        Assert.Throws(Is.InstanceOf<CryptographicException>(), () => ec.ExportECPrivateKey());
        Assert.Throws(Is.InstanceOf<CryptographicException>(), () => ec.ExportPkcs8PrivateKey());
    }

    [Test]
    public void PublishedKey_IsTheHsmsPublicKey()
    {
        using var signer = Open(SoftHsm.UriFor("ES256"));
        using var handle = SafeEvpPKeyHandle.OpenPrivateKeyFromEngine("pkcs11", $"{SoftHsm.UriFor("ES256")};type=private;pin-source=file:{_hsm.PinFile}");
        using var ec = new ECDsaOpenSsl(handle);

        Assert.That(signer.PublicKey.X, Is.EqualTo(Base64UrlEncoder.Encode(ec.ExportParameters(false).Q.X)));
        Assert.That(ec.VerifyData("data"u8, signer.Sign("data"u8), HashAlgorithmName.SHA256), Is.True);
    }

    [Test]
    public void UriWithoutType_GetsTypePrivate_AndSigns()
    {
        using var signer = Open(TokenBroker.Configuration.Pkcs11UriCheck.ForPrivateKey(SoftHsm.UriFor("ES256")));

        Assert.That(signer.Sign("x"u8), Has.Length.EqualTo(64));
    }

    [Test]
    public void PinFromAnEnvironmentVariable_OpensTheKey()
    {
        Environment.SetEnvironmentVariable("TB_TEST_HSM_PIN", SoftHsm.Pin);
        using var signer = Open(SoftHsm.UriFor("ES256") + ";type=private", pin: Pkcs11Signer.PinFromEnvironment("TB_TEST_HSM_PIN"));

        Assert.That(signer.Sign("x"u8), Has.Length.EqualTo(64));
    }

    [Test]
    public void WrongPin_IsAnErrorNamingTheKeyAndUri_WithoutThePin()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Open(SoftHsm.UriFor("ES256", SoftHsm.LonelyToken) + ";type=private", pin: () => "987654"));

        Assert.That(e!.Message, Does.Contain("Signing:Keys:0").And.Contain($"pkcs11:token={SoftHsm.LonelyToken};object=ec256"));
        Assert.That(e.Message, Does.Contain("PIN was rejected"));
        Assert.That(e.Message, Does.Not.Contain("987654"));
    }

    [Test]
    public void MissingObject_IsAnErrorNamingTheKeyAndUri()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Open($"pkcs11:token={SoftHsm.Token};object=no-such-key;type=private"));

        Assert.That(e!.Message, Does.Contain("Signing:Keys:0").And.Contain("object=no-such-key"));
        Assert.That(e.Message, Does.Not.Contain(SoftHsm.Pin));
    }

    [Test]
    public void KeyOnTheWrongCurve_IsRefused()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Open(SoftHsm.UriFor("ES256") + ";type=private", "ES384"));

        Assert.That(e!.Message, Does.Contain("curve"));
    }

    [Test]
    public void EcKeyForAnRsaAlgorithm_IsRefused()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Open(SoftHsm.UriFor("ES256") + ";type=private", "RS256"));

        Assert.That(e!.Message, Does.Contain("not a key for RS256"));
    }

    [Test]
    public void ShortRsaKey_IsRefused()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Open($"pkcs11:token={SoftHsm.Token};object=rsa1024;type=private", "RS256"));

        Assert.That(e!.Message, Does.Contain("2048"));
    }

    [Test]
    public async Task Exchange_ThroughABrokerSigningWithTheHsmKey_VerifiesWithThePublishedJwks()
    {
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?>
        {
            ["TokenBroker:Signing:Keys:0:Source"] = "pkcs11",
            ["TokenBroker:Signing:Keys:0:Uri"] = SoftHsm.UriFor("ES256"),
            ["TokenBroker:Signing:Keys:0:PinFile"] = _hsm.PinFile,
            ["TokenBroker:Signing:Keys:0:KeyId"] = "hsm-es256",
        });

        var response = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);

        var jwks = new JsonWebKeySet(await broker.Client.GetStringAsync(new Uri("/.well-known/jwks.json", UriKind.Relative)));
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(response.AccessToken!, new TokenValidationParameters
        {
            ValidIssuer = broker.Url,
            ValidAudience = "https://deploy.internal/payments",
            IssuerSigningKeys = jwks.GetSigningKeys(),
            ValidAlgorithms = ["ES256"],
            ValidTypes = ["at+jwt"],
        });
        Assert.That(result.IsValid, Is.True, result.Exception?.Message);
        Assert.That(JwtParts.Header(response.AccessToken!)["kid"]!.GetValue<string>(), Is.EqualTo("hsm-es256"));

        var ready = await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative));
        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.OK), "readiness signs a probe with the HSM key");
    }

    [Test]
    public void BrokerStart_WithAMissingHsmObject_FailsNamingTheKeyAndUri()
    {
        var built = BrokerApp.Build(new BrokerAppOptions
        {
            Overrides = new Dictionary<string, string?>
            {
                ["TokenBroker:Signing:Keys:0:Source"] = "pkcs11",
                ["TokenBroker:Signing:Keys:0:Uri"] = $"pkcs11:token={SoftHsm.Token};object=retired-long-ago",
                ["TokenBroker:Signing:Keys:0:PinFile"] = _hsm.PinFile,
            },
        });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains("Signing:Keys:0").And.Contains("object=retired-long-ago"));
        Assert.That(string.Join('\n', built.Errors), Does.Not.Contain(SoftHsm.Pin));
    }

    [Test]
    public void Pkcs11Configuration_ReportsEveryProblemAtOnce()
    {
        var built = BrokerApp.Build(new BrokerAppOptions
        {
            Overrides = new Dictionary<string, string?>
            {
                ["TokenBroker:Signing:Keys:0:Source"] = "pkcs11",
                ["TokenBroker:Signing:Keys:0:Uri"] = "pkcs11:token=tb;object=k1;pin-value=1234",
                ["TokenBroker:Signing:Keys:1:Source"] = "pkcs11",
                ["TokenBroker:Signing:Keys:1:Uri"] = "pkcs11:token=tb;type=public",
                ["TokenBroker:Signing:Keys:1:PinFile"] = "/nonexistent/pin",
                ["TokenBroker:Signing:Keys:1:PinEnvironmentVariable"] = "HSM_PIN",
                ["TokenBroker:Signing:Keys:2:Source"] = "pkcs11",
                ["TokenBroker:Signing:Keys:2:Uri"] = "https://hsm.example/key",
                ["TokenBroker:Signing:Keys:2:PinEnvironmentVariable"] = "TB_TEST_PIN_THAT_IS_NOT_SET",
                ["TokenBroker:Signing:Keys:3:Source"] = "pkcs11",
                ["TokenBroker:Signing:Keys:3:PinFile"] = _hsm.PinFile,
                ["TokenBroker:Signing:ReopenInterval"] = "00:00:00.001",
            },
        });

        Assert.That(built.App, Is.Null);
        var errors = built.Errors;
        Assert.That(errors, Has.Some.Contains("Signing:Keys:0:Uri must not hold a PIN"));
        Assert.That(errors, Has.Some.Contains("Signing:Keys:0: set exactly one of PinFile and PinEnvironmentVariable"));
        Assert.That(errors, Has.Some.Contains("Signing:Keys:1:Uri must name the key"));
        Assert.That(errors, Has.Some.Contains("Signing:Keys:1:Uri has type=public"));
        Assert.That(errors, Has.Some.Contains("Signing:Keys:1: set exactly one of PinFile and PinEnvironmentVariable"));
        Assert.That(errors, Has.Some.Contains("Signing:Keys:2:Uri must start with 'pkcs11:'"));
        Assert.That(errors, Has.Some.Contains("'TB_TEST_PIN_THAT_IS_NOT_SET' is not set"));
        Assert.That(errors, Has.Some.Contains("Signing:Keys:3:Uri is required"));
        Assert.That(errors, Has.Some.Contains("Signing:ReopenInterval"));
        Assert.That(string.Join('\n', errors), Does.Not.Contain("1234"));
    }

    [Test]
    public void PinFileReadableByOthers_GivesAStartUpWarning()
    {
        var loose = Path.Combine(_hsm.Dir, "loose-pin");
        File.WriteAllText(loose, SoftHsm.Pin);
        File.SetUnixFileMode(loose, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["TokenBroker:Signing:Keys:0:Source"] = "pkcs11",
            ["TokenBroker:Signing:Keys:0:Uri"] = SoftHsm.UriFor("ES256"),
            ["TokenBroker:Signing:Keys:0:PinFile"] = loose,
        }).Build();

        var settings = TokenBroker.Configuration.SettingsResolver.Resolve(config, []);

        Assert.That(settings!.Warnings, Has.Some.Contains("Signing:Keys:0:PinFile").And.Contains("group or others"));
        File.SetUnixFileMode(loose, UnixFileMode.UserRead);
        Assert.That(TokenBroker.Configuration.SettingsResolver.Resolve(config, [])!.Warnings, Has.None.Contains("group or others"));
    }

    [TestCase("pkcs11:token=tb;object=k;pin-value=1234", "pkcs11:token=tb;object=k")]
    [TestCase("pkcs11:token=tb;object=k?pin-source=file:/run/pin&module-path=/x.so", "pkcs11:token=tb;object=k?module-path=/x.so")]
    [TestCase("pkcs11:pin-value=1234;token=tb", "pkcs11:token=tb")]
    public void Redact_StripsPinAttributes(string uri, string expected)
    {
        Assert.That(TokenBroker.Configuration.Pkcs11UriCheck.Redact(uri), Is.EqualTo(expected));
    }
}
