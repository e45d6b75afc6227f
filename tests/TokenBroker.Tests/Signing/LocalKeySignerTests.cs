using System.Security.Cryptography;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Signing;

namespace TokenBroker.Tests.Signing;

[TestFixture]
public sealed class LocalKeySignerTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("tb-keys-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private string Write(string name, string pem)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, pem);
        return path;
    }

    [TestCase("ES256", 256)]
    [TestCase("ES384", 384)]
    public void EcPemKey_SignsVerifiably(string alg, int bits)
    {
        using var ec = ECDsa.Create(bits == 256 ? ECCurve.NamedCurves.nistP256 : ECCurve.NamedCurves.nistP384);
        var signer = LocalKeySigner.FromPemFile(Write("ec.pem", ec.ExportPkcs8PrivateKeyPem()), alg);

        var signature = signer.Sign("hello"u8);

        Assert.That(ec.VerifyData("hello"u8, signature, bits == 256 ? HashAlgorithmName.SHA256 : HashAlgorithmName.SHA384), Is.True);
        Assert.That(signer.KeyId, Is.EqualTo(Base64UrlEncoder.Encode(signer.PublicKey.ComputeJwkThumbprint())), "kid is the RFC 7638 thumbprint");
        Assert.That(signer.PublicKey.HasPrivateKey, Is.False);
    }

    [TestCase("RS256")]
    [TestCase("PS256")]
    public void RsaPemKey_SignsVerifiably(string alg)
    {
        using var rsa = RSA.Create(2048);
        var signer = LocalKeySigner.FromPemFile(Write("rsa.pem", rsa.ExportRSAPrivateKeyPem()), alg);

        var signature = signer.Sign("hello"u8);

        Assert.That(rsa.VerifyData("hello"u8, signature, HashAlgorithmName.SHA256, alg == "PS256" ? RSASignaturePadding.Pss : RSASignaturePadding.Pkcs1), Is.True);
    }

    [Test]
    public void ShortRsaKey_IsRefused()
    {
        using var rsa = RSA.Create(1024);

        var e = Assert.Throws<InvalidOperationException>(() => LocalKeySigner.FromPemFile(Write("weak.pem", rsa.ExportRSAPrivateKeyPem()), "RS256"));
        Assert.That(e!.Message, Does.Contain("2048"));
    }

    [Test]
    public void PublicOnlyPem_IsRefused()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var e = Assert.Throws<InvalidOperationException>(() => LocalKeySigner.FromPemFile(Write("pub.pem", ec.ExportSubjectPublicKeyInfoPem()), "ES256"));
        Assert.That(e!.Message, Does.Contain("public key only").Or.Contain("no EC private key"));
    }

    [Test]
    public void KeyOnTheWrongCurve_IsRefused()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP384);

        var e = Assert.Throws<InvalidOperationException>(() => LocalKeySigner.FromPemFile(Write("p384.pem", ec.ExportPkcs8PrivateKeyPem()), "ES256"));
        Assert.That(e!.Message, Does.Contain("curve"));
    }

    [Test]
    public void RsaKeyForAnEcAlgorithm_IsRefused()
    {
        using var rsa = RSA.Create(2048);

        Assert.Throws<InvalidOperationException>(() => LocalKeySigner.FromPemFile(Write("rsa.pem", rsa.ExportRSAPrivateKeyPem()), "ES256"));
    }
}
