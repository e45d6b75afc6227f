using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Tokens;

namespace TokenBroker.Tests.Security;

public sealed class JwkVerifierTests
{
    private static readonly byte[] Input = Encoding.ASCII.GetBytes("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0");

    public sealed record Case(string Name, string Algorithm, Func<(AsymmetricAlgorithm Key, JsonWebKey Jwk)> Make)
    {
        public override string ToString() => Name;
    }

    private static (AsymmetricAlgorithm, JsonWebKey) Rsa(int bits)
    {
        var rsa = RSA.Create(bits);
        var p = rsa.ExportParameters(false);
        return (rsa, new JsonWebKey { Kty = "RSA", N = Base64UrlEncoder.Encode(p.Modulus), E = Base64UrlEncoder.Encode(p.Exponent), Kid = "r" });
    }

    private static (AsymmetricAlgorithm, JsonWebKey) Ec(ECCurve curve, string crv)
    {
        var ec = ECDsa.Create(curve);
        var p = ec.ExportParameters(false);
        return (ec, new JsonWebKey { Kty = "EC", Crv = crv, X = Base64UrlEncoder.Encode(p.Q.X), Y = Base64UrlEncoder.Encode(p.Q.Y), Kid = "e" });
    }

    private static byte[] Sign(AsymmetricAlgorithm key, string algorithm, byte[] input)
    {
        var hash = algorithm[2..] switch { "256" => HashAlgorithmName.SHA256, "384" => HashAlgorithmName.SHA384, _ => HashAlgorithmName.SHA512 };
        return key switch
        {
            RSA rsa => rsa.SignData(input, hash, algorithm[0] == 'P' ? RSASignaturePadding.Pss : RSASignaturePadding.Pkcs1),
            ECDsa ec => ec.SignData(input, hash, DSASignatureFormat.IeeeP1363FixedFieldConcatenation),
            _ => throw new ArgumentException("an RSA or ECDSA key", nameof(key)),
        };
    }

    private static IEnumerable<Case> Algorithms()
    {
        yield return new Case("RS256", "RS256", () => Rsa(2048));
        yield return new Case("RS512", "RS512", () => Rsa(2048));
        yield return new Case("PS256", "PS256", () => Rsa(2048));
        yield return new Case("PS384", "PS384", () => Rsa(3072));
        yield return new Case("ES256 on P-256", "ES256", () => Ec(ECCurve.NamedCurves.nistP256, "P-256"));
        yield return new Case("ES384 on P-384", "ES384", () => Ec(ECCurve.NamedCurves.nistP384, "P-384"));
        yield return new Case("ES512 on P-521", "ES512", () => Ec(ECCurve.NamedCurves.nistP521, "P-521"));
    }

    [TestCaseSource(nameof(Algorithms))]
    public void AValidSignature_Verifies_AndAnyChangedByteDoesNot(Case c)
    {
        var (key, jwk) = c.Make();
        using var _ = key;
        var signature = Sign(key, c.Algorithm, Input);
        var tamperedInput = (byte[])Input.Clone();
        tamperedInput[^1] ^= 1;
        var tamperedSignature = (byte[])signature.Clone();
        tamperedSignature[signature.Length / 2] ^= 0x40;

        Assert.Multiple(() =>
        {
            Assert.That(JwkVerifier.Verify(jwk, c.Algorithm, Input, signature), Is.True);
            Assert.That(JwkVerifier.Verify(jwk, c.Algorithm, Input, signature), Is.True, "second call, from the cached key");
            Assert.That(JwkVerifier.Verify(jwk, c.Algorithm, tamperedInput, signature), Is.False);
            Assert.That(JwkVerifier.Verify(jwk, c.Algorithm, Input, tamperedSignature), Is.False);
            Assert.That(JwkVerifier.Verify(jwk, c.Algorithm, Input, signature.AsSpan(1)), Is.False, "truncated");
            Assert.That(JwkVerifier.Verify(jwk, c.Algorithm, Input, []), Is.False, "empty");
        });
    }

    public sealed record Mismatch(string Name, string SignedWith, string ClaimedAlgorithm, Func<(AsymmetricAlgorithm Key, JsonWebKey Jwk)> Make)
    {
        public override string ToString() => Name;
    }

    private static IEnumerable<Mismatch> Mismatches()
    {
        yield return new Mismatch("PKCS#1 signature claimed as PSS", "RS256", "PS256", () => Rsa(2048));
        yield return new Mismatch("PSS signature claimed as PKCS#1", "PS256", "RS256", () => Rsa(2048));
        yield return new Mismatch("RS256 signature claimed as RS384", "RS256", "RS384", () => Rsa(2048));
        yield return new Mismatch("ES384 on a P-384 key claimed as ES256", "ES384", "ES256", () => Ec(ECCurve.NamedCurves.nistP384, "P-384"));
        yield return new Mismatch("ES256 claimed as HS256", "ES256", "HS256", () => Ec(ECCurve.NamedCurves.nistP256, "P-256"));
        yield return new Mismatch("RS256 claimed as none", "RS256", "none", () => Rsa(2048));
        yield return new Mismatch("RS256 with a 1024-bit key", "RS256", "RS256", () => Rsa(1024));
        yield return new Mismatch("RS256 claimed against an EC key", "ES256", "RS256", () => Ec(ECCurve.NamedCurves.nistP256, "P-256"));
    }

    [TestCaseSource(nameof(Mismatches))]
    public void ASignatureUnderAnotherAlgorithmOrKey_DoesNotVerify(Mismatch m)
    {
        var (key, jwk) = m.Make();
        using var _ = key;
        var signature = Sign(key, m.SignedWith, Input);
        Assert.That(JwkVerifier.Verify(jwk, m.ClaimedAlgorithm, Input, signature), Is.False);
    }

    [Test]
    public void AKeyFromANewKeySet_IsImportedAgain_NotServedFromTheCache()
    {
        // A JWKS refresh brings new JsonWebKey instances; a rotated key under the same kid must not verify.
        var (oldKey, oldJwk) = Rsa(2048);
        var (newKey, newJwk) = Rsa(2048);
        using var _ = oldKey;
        using var __ = newKey;
        var signedByOld = Sign(oldKey, "RS256", Input);
        Assert.Multiple(() =>
        {
            Assert.That(JwkVerifier.Verify(oldJwk, "RS256", Input, signedByOld), Is.True);
            Assert.That(JwkVerifier.Verify(newJwk, "RS256", Input, signedByOld), Is.False);
        });
    }

    [Test]
    public void AKeyThatCannotBeImported_VerifiesNothing()
    {
        var (key, jwk) = Ec(ECCurve.NamedCurves.nistP256, "P-256");
        using var _ = key;
        var signature = Sign(key, "ES256", Input);
        var offCurve = new JsonWebKey { Kty = "EC", Crv = "P-256", X = jwk.X, Y = Base64UrlEncoder.Encode(new byte[32]) };
        var shortX = new JsonWebKey { Kty = "EC", Crv = "P-256", X = Base64UrlEncoder.Encode(new byte[31]), Y = jwk.Y };
        var unknownCurve = new JsonWebKey { Kty = "EC", Crv = "secp256k1", X = jwk.X, Y = jwk.Y };
        Assert.Multiple(() =>
        {
            Assert.That(JwkVerifier.Verify(offCurve, "ES256", Input, signature), Is.False);
            Assert.That(JwkVerifier.Verify(shortX, "ES256", Input, signature), Is.False);
            Assert.That(JwkVerifier.Verify(unknownCurve, "ES256", Input, signature), Is.False);
        });
    }

    [TestCase("RS256")]
    [TestCase("PS256")]
    public void AnRsaKeyUnder2048Bits_VerifiesNothing_AlsoWhenGivenOnlyAsACertificate(string algorithm)
    {
        // The certificate path used to hand such a key to IdentityModel, whose floor for verifying is 1024 bits.
        using var rsa = RSA.Create(1024);
        var request = new CertificateRequest("CN=issuer", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.Now.AddDays(-1), DateTimeOffset.Now.AddDays(1));
        var certificateOnly = new JsonWebKey { Kty = "RSA", Kid = "c" };
        certificateOnly.X5c.Add(Convert.ToBase64String(certificate.Export(X509ContentType.Cert)));
        var parameters = rsa.ExportParameters(false);
        var fromParameters = new JsonWebKey { Kty = "RSA", Kid = "p", N = Base64UrlEncoder.Encode(parameters.Modulus), E = Base64UrlEncoder.Encode(parameters.Exponent) };
        var signature = Sign(rsa, algorithm, Input);
        Assert.Multiple(() =>
        {
            Assert.That(JwkVerifier.Verify(certificateOnly, algorithm, Input, signature), Is.False, "certificate");
            Assert.That(JwkVerifier.Verify(fromParameters, algorithm, Input, signature), Is.False, "n and e");
        });
    }

    [Test]
    public void AKeyGivenOnlyAsACertificate_StillVerifies()
    {
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest("CN=issuer", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.Now.AddDays(-1), DateTimeOffset.Now.AddDays(1));
        var jwk = new JsonWebKey { Kty = "RSA", Kid = "c" };
        jwk.X5c.Add(Convert.ToBase64String(certificate.Export(X509ContentType.Cert)));
        var signature = rsa.SignData(Input, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var other = rsa.SignData(Encoding.ASCII.GetBytes("other"), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        Assert.Multiple(() =>
        {
            Assert.That(JwkVerifier.Verify(jwk, "RS256", Input, signature), Is.True);
            Assert.That(JwkVerifier.Verify(jwk, "RS256", Input, other), Is.False);
        });
    }

    [TestCase("RS256", false)]
    [TestCase("PS256", false)]
    [TestCase("RS256", true)]
    [TestCase("PS256", true)]
    public void AnRsaSignatureWithItsLeadingZeroDropped_DoesNotVerify(string algorithm, bool certificateOnly)
    {
        // One signature in 256 starts with a zero octet; OpenSSL accepts it without that octet too (the same number).
        // RFC 8017 wants exactly the modulus length, so the shorter encoding must fail, and the full one still verify.
        var (key, jwk) = Rsa(2048);
        using var _ = key;
        if (certificateOnly)
        {
            var request = new CertificateRequest("CN=issuer", (RSA)key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            using var certificate = request.CreateSelfSigned(DateTimeOffset.Now.AddDays(-1), DateTimeOffset.Now.AddDays(1));
            jwk = new JsonWebKey { Kty = "RSA", Kid = "c" };
            jwk.X5c.Add(Convert.ToBase64String(certificate.Export(X509ContentType.Cert)));
        }

        var (input, signature) = Enumerable.Range(0, 20_000)
            .Select(i => Encoding.ASCII.GetBytes($"{Encoding.ASCII.GetString(Input)}{i}"))
            .Select(i => (Input: i, Signature: Sign(key, algorithm, i)))
            .First(p => p.Signature[0] == 0);
        Assert.Multiple(() =>
        {
            Assert.That(JwkVerifier.Verify(jwk, algorithm, input, signature), Is.True);
            Assert.That(JwkVerifier.Verify(jwk, algorithm, input, signature.AsSpan(1)), Is.False, "leading zero dropped");
            Assert.That(JwkVerifier.Verify(jwk, algorithm, input, [0, .. signature]), Is.False, "a zero octet added");
        });
    }

    [Test]
    public void OneCachedKey_VerifiesCorrectlyFromManyThreadsAtOnce()
    {
        var (key, jwk) = Rsa(2048);
        using var _ = key;
        var inputs = Enumerable.Range(0, 64).Select(i => Encoding.ASCII.GetBytes($"input-{i}")).ToArray();
        var signatures = inputs.Select(i => Sign(key, "RS256", i)).ToArray();
        var wrong = 0;
        Parallel.For(0, 4_000, new ParallelOptions { MaxDegreeOfParallelism = 8 }, n =>
        {
            var i = n % inputs.Length;
            var good = JwkVerifier.Verify(jwk, "RS256", inputs[i], signatures[i]);
            var bad = JwkVerifier.Verify(jwk, "RS256", inputs[i], signatures[(i + 1) % inputs.Length]);
            if (!good || bad)
            {
                Interlocked.Increment(ref wrong);
            }
        });
        Assert.That(wrong, Is.Zero);
    }
}
