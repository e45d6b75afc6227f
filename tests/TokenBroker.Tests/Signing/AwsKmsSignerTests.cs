using System.Net;
using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Signing;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Signing;

/// <summary>
/// The experimental AWS KMS signer against a fake KMS on loopback (AWS JSON 1.1, SigV4-signed requests with dummy
/// credentials from the standard chain's environment variables).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class AwsKmsSignerTests
{
    private static readonly string[] CredentialVariables = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_EC2_METADATA_DISABLED"];
    private readonly Dictionary<string, string?> _saved = [];
    private FakeKms _kms = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        foreach (var name in CredentialVariables)
        {
            _saved[name] = Environment.GetEnvironmentVariable(name);
        }

        // Dummy values: the fake checks that requests are signed, not with what.
        Environment.SetEnvironmentVariable("AWS_ACCESS_KEY_ID", "AKIDEXAMPLETESTONLY");
        Environment.SetEnvironmentVariable("AWS_SECRET_ACCESS_KEY", "dummy-secret-for-a-fake-kms");
        Environment.SetEnvironmentVariable("AWS_SESSION_TOKEN", null);
        Environment.SetEnvironmentVariable("AWS_EC2_METADATA_DISABLED", "true");
        _kms = await FakeKms.StartAsync();
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _kms.DisposeAsync();
        foreach (var (name, value) in _saved)
        {
            Environment.SetEnvironmentVariable(name, value);
        }
    }

    [SetUp]
    public void Reset()
    {
        _kms.WrongKey = false;
        _kms.Down = false;
    }

    private Dictionary<string, string?> Settings(string kmsKeyId = "alias/tokenbroker") => new()
    {
        ["TokenBroker:Signing:Keys:0:Source"] = "aws-kms",
        ["TokenBroker:Signing:Keys:0:KmsKeyId"] = kmsKeyId,
        ["TokenBroker:Signing:Keys:0:Region"] = "eu-west-1",
        ["TokenBroker:Signing:Keys:0:ServiceUrl"] = _kms.Url,
        ["TokenBroker:Signing:Keys:0:KeyId"] = "kms-es256",
    };

    [Test]
    public async Task TokensSignedInKms_VerifyAgainstThePublishedJwks_WhichHoldsTheKmsPublicKey()
    {
        await using var broker = await BrokerHarness.StartAsync(Settings());

        var response = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.OK), response.Raw);
        var jwks = new JsonWebKeySet(await broker.Client.GetStringAsync(new Uri("/.well-known/jwks.json", UriKind.Relative)));
        var published = jwks.Keys.Single();
        var expected = _kms.PublicParameters;
        Assert.That(published.Kid, Is.EqualTo("kms-es256"));
        Assert.That(Base64UrlEncoder.DecodeBytes(published.X), Is.EqualTo(expected.Q.X), "the JWKS publishes the key read from KMS");
        Assert.That(Base64UrlEncoder.DecodeBytes(published.Y), Is.EqualTo(expected.Q.Y));
        var verified = await new JsonWebTokenHandler().ValidateTokenAsync(response.AccessToken!, new TokenValidationParameters
        {
            ValidIssuer = broker.BrokerIssuer,
            ValidAudience = "https://deploy.internal/payments",
            IssuerSigningKeys = jwks.GetSigningKeys(),
            ValidAlgorithms = ["ES256"],
        });
        Assert.That(verified.IsValid, Is.True, verified.Exception?.Message);
        Assert.That(_kms.Calls, Has.Some.EqualTo("TrentService.GetPublicKey alias/tokenbroker signed"));
        Assert.That(_kms.Calls, Has.Some.EqualTo("TrentService.Sign alias/tokenbroker signed"), "requests carry SigV4 signatures from the standard credential chain");
    }

    [Test]
    public void ASignatureThatDoesNotVerify_FailsClosed()
    {
        using var signer = AwsKmsSigner.Open("Signing:Keys:0", "alias/tokenbroker", "eu-west-1", _kms.Url, "ES256", null, TimeSpan.FromSeconds(5));
        Assert.That(signer.Sign("probe"u8), Has.Length.EqualTo(64), "JOSE R || S for P-256");

        _kms.WrongKey = true;
        var e = Assert.Throws<SigningUnavailableException>(() => signer.Sign("probe"u8));
        Assert.That(e!.Message, Does.Contain("does not verify"));
    }

    [Test]
    public async Task AKmsOutage_AnswersTB1303_AndReadinessFails()
    {
        await using var broker = await BrokerHarness.StartAsync(Settings(FakeKms.KeyArn));
        _kms.Down = true;

        var response = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        using var ready = await broker.Client.GetAsync(new Uri("/readyz", UriKind.Relative));

        Assert.That(response.Status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), response.Raw);
        Assert.That(response.ErrorId, Is.EqualTo("TB1303"));
        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
    }

    [Test]
    public void AnUnknownKmsKey_StopsTheStart_NamingTheKey()
    {
        var overrides = Settings("alias/missing");
        overrides["TokenBroker:Issuer"] = "https://broker.example";
        var built = TokenBroker.Hosting.BrokerApp.Build(new TokenBroker.Hosting.BrokerAppOptions { Overrides = overrides });

        Assert.That(built.App, Is.Null);
        Assert.That(built.Errors, Has.Some.Contains("Signing:Keys:0: AWS KMS key 'alias/missing' cannot be read").And.Contains("NotFoundException"));
    }

    private static IEnumerable<TestCaseData> DerCases()
    {
        yield return new TestCaseData(32).SetName("DerToJose_PadsShortComponents_AndDropsSignBytes_P256");
        yield return new TestCaseData(48).SetName("DerToJose_PadsShortComponents_AndDropsSignBytes_P384");
    }

    [TestCaseSource(nameof(DerCases))]
    public void DerToJose_MatchesDotNetsOwnConversion(int fieldSize)
    {
        using var key = ECDsa.Create(fieldSize == 32 ? ECCurve.NamedCurves.nistP256 : ECCurve.NamedCurves.nistP384);
        for (var i = 0; i < 200; i++)
        {
            var data = BitConverter.GetBytes(i);
            var der = key.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
            var jose = AwsKmsSigner.DerToJose(der, fieldSize);
            Assert.That(jose, Has.Length.EqualTo(2 * fieldSize));
            Assert.That(key.VerifyData(data, jose, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation), Is.True, $"signature {i}");
        }
    }
}
