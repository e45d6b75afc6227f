using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using TokenBroker.Demo;
using TokenBroker.Hosting;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Operations;

/// <summary>HTTPS served by Kestrel: from Tls:CertificatePath/KeyPath, and from Kestrel's own configuration.</summary>
[TestFixture]
public sealed class TlsTests
{
    private string _dir = null!;

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("tb-tls-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    /// <summary>A self-signed loopback certificate as PEM files; returns its thumbprint.</summary>
    private static string WriteCertificate(string certificatePath, string keyPath, string commonName = "127.0.0.1")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        File.WriteAllText(certificatePath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return certificate.Thumbprint;
    }

    /// <summary>A client that trusts exactly the given certificate (pinned by thumbprint) and records the TLS version.</summary>
    private static HttpClient PinnedClient(string thumbprint, string baseUrl, SslProtocols protocols = SslProtocols.None) =>
        new(new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = protocols,
                RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is X509Certificate2 c && c.Thumbprint == thumbprint,
            },
        })
        { BaseAddress = new Uri(baseUrl) };

    [Test]
    public async Task Https_WithTlsCertificateFiles_ServesExchangesAndHsts()
    {
        var thumbprint = WriteCertificate(Path.Combine(_dir, "tls.crt"), Path.Combine(_dir, "tls.key"));
        var url = $"https://127.0.0.1:{FakeCiIssuer.FreePort()}";
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?>
        {
            ["urls"] = url,
            ["TokenBroker:Issuer"] = url,
            ["TokenBroker:Tls:CertificatePath"] = Path.Combine(_dir, "tls.crt"),
            ["TokenBroker:Tls:KeyPath"] = Path.Combine(_dir, "tls.key"),
        });
        using var client = PinnedClient(thumbprint, url);
        using var content = new FormUrlEncodedContent(BrokerHarness.ExchangeForm(broker.GitHubToken(), "https://deploy.internal/payments"));

        using var response = await client.PostAsync(new Uri("/token", UriKind.Relative), content);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        Assert.That(response.Headers.GetValues("Strict-Transport-Security"), Is.EqualTo(new[] { "max-age=31536000" }));
    }

    [Test]
    public async Task Https_NegotiatesTls12OrLater()
    {
        var thumbprint = WriteCertificate(Path.Combine(_dir, "tls.crt"), Path.Combine(_dir, "tls.key"));
        var port = FakeCiIssuer.FreePort();
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?>
        {
            ["urls"] = $"https://127.0.0.1:{port}",
            ["TokenBroker:Issuer"] = $"https://127.0.0.1:{port}",
            ["TokenBroker:Tls:CertificatePath"] = Path.Combine(_dir, "tls.crt"),
            ["TokenBroker:Tls:KeyPath"] = Path.Combine(_dir, "tls.key"),
        });

        foreach (var protocol in new[] { SslProtocols.Tls12, SslProtocols.Tls13 })
        {
            using var tcp = new TcpClient();
            await tcp.ConnectAsync(IPAddress.Loopback, port);
            await using var tls = new SslStream(tcp.GetStream());
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "127.0.0.1",
                EnabledSslProtocols = protocol,
                RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is X509Certificate2 c && c.Thumbprint == thumbprint,
            });

            Assert.That(tls.SslProtocol, Is.EqualTo(protocol));
        }
    }

    [Test]
    public async Task Https_WithKestrelEndpointConfiguration_WorksThroughTheStrictBinding()
    {
        var thumbprint = WriteCertificate(Path.Combine(_dir, "tls.crt"), Path.Combine(_dir, "tls.key"));
        var url = $"https://127.0.0.1:{FakeCiIssuer.FreePort()}";
        await using var broker = await BrokerHarness.StartAsync(new Dictionary<string, string?>
        {
            ["TokenBroker:Issuer"] = url,
            ["Kestrel:Endpoints:Https:Url"] = url,
            ["Kestrel:Endpoints:Https:Certificate:Path"] = Path.Combine(_dir, "tls.crt"),
            ["Kestrel:Endpoints:Https:Certificate:KeyPath"] = Path.Combine(_dir, "tls.key"),
        });
        using var client = PinnedClient(thumbprint, url);

        using var response = await client.GetAsync(new Uri("/.well-known/openid-configuration", UriKind.Relative));

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(response.Headers.Contains("Strict-Transport-Security"), Is.True);
        Assert.That(BrokerApp.Addresses(broker.App), Has.Some.StartsWith("https://"));
    }

    [Test]
    public void Certificate_ReplacedOnDisk_IsServedAfterTheCheckInterval()
    {
        var certificatePath = Path.Combine(_dir, "tls.crt");
        var keyPath = Path.Combine(_dir, "tls.key");
        var first = WriteCertificate(certificatePath, keyPath, "first");
        var clock = new TickClock();
        var tls = new TlsCertificate(certificatePath, keyPath, clock);
        Assert.That(tls.Current.Thumbprint, Is.EqualTo(first));

        var second = WriteCertificate(certificatePath, keyPath, "second");
        File.SetLastWriteTimeUtc(certificatePath, DateTime.UtcNow.AddMinutes(1));
        Assert.That(tls.Current.Thumbprint, Is.EqualTo(first), "not re-checked before the interval");

        clock.Advance(TlsCertificate.CheckInterval);
        Assert.That(tls.Current.Thumbprint, Is.EqualTo(second));

        // A half-written replacement keeps the current certificate.
        File.WriteAllText(keyPath, "-----BEGIN PRIVATE KEY-----\ntruncated");
        File.SetLastWriteTimeUtc(keyPath, DateTime.UtcNow.AddMinutes(2));
        clock.Advance(TlsCertificate.CheckInterval);
        Assert.That(tls.Current.Thumbprint, Is.EqualTo(second));
    }
}

/// <summary>The new settings are validated with every other setting, all errors at once.</summary>
[TestFixture]
public sealed class OperationsConfigurationTests
{
    private static IReadOnlyList<string> Errors(Dictionary<string, string?> settings)
    {
        var built = BrokerApp.Build(new BrokerAppOptions { Overrides = settings, MinimumLogLevel = LogLevel.Warning });
        Assert.That(built.App, Is.Null);
        return built.Errors;
    }

    private static IEnumerable<TestCaseData> BadSettings()
    {
        static TestCaseData Case(string name, string key, string value, string error) =>
            new TestCaseData(key, value, error).SetName("Settings_" + name + "_AreRefused");
        yield return Case("NegativeBurst", "TokenBroker:RateLimits:Token:Burst", "-1", "RateLimits:Token:Burst");
        yield return Case("BurstWithZeroRate", "TokenBroker:RateLimits:Repository:PerMinute", "0", "RateLimits:Repository:PerMinute");
        yield return Case("TinyKeyTable", "TokenBroker:RateLimits:MaxTrackedKeys", "5", "RateLimits:MaxTrackedKeys");
        yield return Case("IPv6PrefixTooShort", "TokenBroker:RateLimits:IPv6PrefixLength", "16", "RateLimits:IPv6PrefixLength");
        yield return Case("UnknownRateLimitKey", "TokenBroker:RateLimits:Tokens:Burst", "5", "unknown setting 'Tokens'");
        yield return Case("ProxyNotAnAddress", "TokenBroker:Proxy:KnownProxies:0", "proxy.internal", "Proxy:KnownProxies:0");
        yield return Case("ProxyAsCidr", "TokenBroker:Proxy:KnownProxies:0", "10.0.0.0/8", "Proxy:KnownProxies:0");
        yield return Case("NetworkWithHostBits", "TokenBroker:Proxy:KnownNetworks:0", "10.1.2.3/8", "Proxy:KnownNetworks:0");
        yield return Case("NetworkTrustingEveryone", "TokenBroker:Proxy:KnownNetworks:0", "0.0.0.0/0", "trusts every address");
        yield return Case("ForwardLimitZero", "TokenBroker:Proxy:ForwardLimit", "0", "Proxy:ForwardLimit");
        yield return Case("CertificateWithoutKey", "TokenBroker:Tls:CertificatePath", "/nonexistent.crt", "Tls: set both CertificatePath and KeyPath");
        yield return Case("HstsNegative", "TokenBroker:Tls:HstsMaxAgeSeconds", "-1", "Tls:HstsMaxAgeSeconds");
        yield return Case("ShutdownTimeoutZero", "TokenBroker:Hosting:ShutdownTimeout", "00:00:00", "Hosting:ShutdownTimeout");
        yield return Case("DrainLongerThanTimeout", "TokenBroker:Hosting:DrainDelay", "00:00:45", "Hosting:DrainDelay must be less than");
    }

    [TestCaseSource(nameof(BadSettings))]
    public void Settings_OutOfRange_AreRefused(string key, string value, string error)
    {
        Assert.That(Errors(new() { [key] = value }), Has.Some.Contains(error));
    }

    [Test]
    public void Tls_WithAnUnreadableCertificate_OrNoHttpsUrl_IsRefused()
    {
        var errors = Errors(new()
        {
            ["TokenBroker:Tls:CertificatePath"] = "/nonexistent/tls.crt",
            ["TokenBroker:Tls:KeyPath"] = "/nonexistent/tls.key",
        });

        Assert.That(errors, Has.Some.Contains("no listen URL (urls) is https://"));
        Assert.That(errors, Has.Some.Contains("cannot be loaded"));
    }
}
