using System.Runtime.Versioning;
using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Signing;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Signing;

/// <summary>
/// What every <see cref="ITokenSigner"/> promises, run against each implementation: tokens it signs verify with the
/// public JWK it publishes (through IdentityModel, as a verifier would), the JWK holds public members only, and the
/// kid defaults to the RFC 7638 thumbprint.
/// </summary>
public abstract class SignerContract
{
    public static readonly string[] Algorithms = ["ES256", "ES384", "RS256", "PS256"];

    protected abstract ITokenSigner Create(string algorithm, string? keyId = null);

    [TestCaseSource(nameof(Algorithms))]
    public async Task SignedToken_VerifiesWithThePublishedKey(string algorithm)
    {
        var signer = Create(algorithm);

        var token = Mint(signer);
        var result = await Verify(token, signer.PublicKey, algorithm);

        Assert.That(result.IsValid, Is.True, result.Exception?.Message);
        Assert.That(JwtParts.Header(token)["kid"]!.GetValue<string>(), Is.EqualTo(signer.KeyId));
    }

    [TestCaseSource(nameof(Algorithms))]
    public async Task TokenSignedByAnotherKey_DoesNotVerify(string algorithm)
    {
        var signer = Create(algorithm);
        var other = LocalKeySignerContractTests.Stranger(algorithm, signer.KeyId);

        var result = await Verify(Mint(other), signer.PublicKey, algorithm);

        Assert.That(result.IsValid, Is.False);
    }

    [TestCaseSource(nameof(Algorithms))]
    public void PublishedKey_HasPublicMembersOnly_AndTheThumbprintAsDefaultKid(string algorithm)
    {
        var signer = Create(algorithm);

        var jwk = signer.PublicKey;
        Assert.That(new[] { jwk.D, jwk.P, jwk.Q, jwk.DP, jwk.DQ, jwk.QI }, Has.All.Null);
        Assert.That(signer.PublicKey.HasPrivateKey, Is.False);
        Assert.That(signer.KeyId, Is.EqualTo(Base64UrlEncoder.Encode(signer.PublicKey.ComputeJwkThumbprint())));
        Assert.That(signer.PublicKey.Alg, Is.EqualTo(algorithm));
        Assert.That(signer.Algorithm, Is.EqualTo(algorithm));
    }

    [Test]
    public void ConfiguredKeyId_IsUsed()
    {
        var signer = Create("ES256", "prod-2026-11");

        Assert.That(signer.KeyId, Is.EqualTo("prod-2026-11"));
        Assert.That(signer.PublicKey.Kid, Is.EqualTo("prod-2026-11"));
    }

    [TestCase("ES256", 64)]
    [TestCase("ES384", 96)]
    public void EcdsaSignatures_AreInTheJwsFixedWidthForm(string algorithm, int length)
    {
        var signer = Create(algorithm);

        Assert.That(signer.Sign("payload"u8), Has.Length.EqualTo(length));
    }

    [Test]
    public async Task ConcurrentSigning_ProducesOnlyValidSignatures()
    {
        var signer = Create("ES256");

        var tokens = await Task.WhenAll(Enumerable.Range(0, 64).Select(_ => Task.Run(() => Mint(signer))));

        foreach (var token in tokens)
        {
            var result = await Verify(token, signer.PublicKey, "ES256");
            Assert.That(result.IsValid, Is.True, result.Exception?.Message);
        }
    }

    internal static string Mint(ITokenSigner signer, string audience = "https://verifier.example") => TokenMinter.Mint(new MintRequest
    {
        Issuer = "https://broker.example",
        Subject = "contract",
        Audiences = [audience],
        IssuedAt = DateTimeOffset.UnixEpoch.AddYears(60),
        ExpiresAt = DateTimeOffset.UnixEpoch.AddYears(60).AddMinutes(5),
        Jti = TokenMinter.NewJti(),
        ClientId = "contract",
        Scopes = [],
        Type = "JWT",
        Context = [],
        Extra = [],
    }, signer);

    internal static Task<TokenValidationResult> Verify(string token, JsonWebKey key, string algorithm) =>
        new JsonWebTokenHandler().ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = "https://broker.example",
            ValidAudience = "https://verifier.example",
            IssuerSigningKey = key,
            ValidAlgorithms = [algorithm],
            ValidateLifetime = false,
            RequireSignedTokens = true,
        });
}

[TestFixture]
public sealed class LocalKeySignerContractTests : SignerContract
{
    // RSA-2048 generation takes about a second here; signers are stateless, so one per algorithm and kid will do.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, string?), LocalKeySigner> Keys = new();

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, string?), LocalKeySigner> Strangers = new();

    /// <summary>Another key that claims the same kid.</summary>
    internal static LocalKeySigner Stranger(string algorithm, string keyId) => Strangers.GetOrAdd((algorithm, keyId), k => LocalKeySigner.Generate(k.Item1, k.Item2));

    internal static LocalKeySigner Cached(string algorithm, string? keyId) => Keys.GetOrAdd((algorithm, keyId), k => LocalKeySigner.Generate(k.Item1, k.Item2));

    protected override ITokenSigner Create(string algorithm, string? keyId = null) => Cached(algorithm, keyId);
}

[TestFixture]
[SupportedOSPlatform("linux")]
public sealed class Pkcs11SignerContractTests : SignerContract
{
    [OneTimeSetUp]
    public void RequireLinux()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Ignore("PKCS#11 signing is Linux only");
        }
    }

    private readonly List<Pkcs11Signer> _opened = [];

    [OneTimeTearDown]
    public void CloseKeys() => _opened.ForEach(s => s.Dispose());

    protected override ITokenSigner Create(string algorithm, string? keyId = null)
    {
        var signer = Pkcs11Signer.Open("contract", SoftHsm.UriFor(algorithm) + ";type=private", Pkcs11Signer.PinFromFile(SoftHsm.Shared.PinFile), algorithm, keyId, TimeProvider.System, TimeSpan.FromSeconds(1));
        lock (_opened)
        {
            _opened.Add(signer);
        }

        return signer;
    }
}
