using System.Security.Cryptography;
using Microsoft.IdentityModel.Tokens;

namespace TokenBroker.Signing;

/// <summary>
/// Signs with a private key held in process memory: loaded from a PEM file (EC P-256/P-384, RSA of at least 2048
/// bits) or generated at start-up for development.
/// </summary>
public sealed class LocalKeySigner : ITokenSigner, IDisposable
{
    private readonly AsymmetricAlgorithm _key;
    private readonly Func<ReadOnlySpan<byte>, byte[]> _sign;

    private LocalKeySigner(AsymmetricAlgorithm key, string algorithm, string? keyId)
    {
        _key = key;
        Algorithm = algorithm;
        var hash = SignerKeys.HashFor(algorithm);
        PublicKey = SignerKeys.PublishedJwk(key, algorithm, keyId);
        KeyId = PublicKey.Kid;
        if (key is ECDsa ec)
        {
            _sign = data => ec.SignData(data, hash);
        }
        else
        {
            var rsa = (RSA)key;
            var padding = SignerKeys.PaddingFor(algorithm);
            _sign = data => rsa.SignData(data, hash, padding);
        }

    }

    public string KeyId { get; }

    public string Algorithm { get; }

    public JsonWebKey PublicKey { get; }

    public byte[] Sign(ReadOnlySpan<byte> signingInput)
    {
        try
        {
            return _sign(signingInput);
        }
        catch (CryptographicException e)
        {
            throw new SigningUnavailableException($"key '{KeyId}' failed to sign", e);
        }
    }

    /// <summary>A fresh key, for development and tests. ES* get the matching curve; RS*/PS* get RSA-2048.</summary>
    public static LocalKeySigner Generate(string algorithm = "ES256", string? keyId = null) => algorithm switch
    {
        "ES256" => new LocalKeySigner(ECDsa.Create(ECCurve.NamedCurves.nistP256), algorithm, keyId),
        "ES384" => new LocalKeySigner(ECDsa.Create(ECCurve.NamedCurves.nistP384), algorithm, keyId),
        "RS256" or "PS256" => new LocalKeySigner(RSA.Create(2048), algorithm, keyId),
        _ => throw new ArgumentException($"unsupported algorithm '{algorithm}'", nameof(algorithm)),
    };

    /// <summary>Loads a PEM private key and checks that it fits the algorithm.</summary>
    /// <exception cref="InvalidOperationException">The file is unreadable, holds no usable private key, or the key does not fit.</exception>
    public static LocalKeySigner FromPemFile(string path, string algorithm, string? keyId = null)
    {
        string pem;
        try
        {
            pem = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"signing key file '{path}' cannot be read: {e.Message}", e);
        }

        AsymmetricAlgorithm key;
        if (algorithm.StartsWith("ES", StringComparison.Ordinal))
        {
            var ec = ECDsa.Create();
            try
            {
                ec.ImportFromPem(pem);
            }
            catch (ArgumentException e)
            {
                ec.Dispose();
                throw new InvalidOperationException($"signing key file '{path}' holds no EC private key for {algorithm}: {e.Message}", e);
            }

            var expected = algorithm == "ES256" ? "nistP256" : "nistP384";
            var parameters = ec.ExportParameters(false);
            var oid = parameters.Curve.Oid;
            var curveOk = oid.FriendlyName == expected || oid.Value == (algorithm == "ES256" ? "1.2.840.10045.3.1.7" : "1.3.132.0.34");
            if (!curveOk)
            {
                ec.Dispose();
                throw new InvalidOperationException($"signing key file '{path}' is on curve {oid.FriendlyName ?? oid.Value}; {algorithm} needs {expected}");
            }

            key = ec;
        }
        else
        {
            var rsa = RSA.Create();
            try
            {
                rsa.ImportFromPem(pem);
            }
            catch (ArgumentException e)
            {
                rsa.Dispose();
                throw new InvalidOperationException($"signing key file '{path}' holds no RSA private key for {algorithm}: {e.Message}", e);
            }

            if (rsa.KeySize < 2048)
            {
                rsa.Dispose();
                throw new InvalidOperationException($"signing key file '{path}' is RSA-{rsa.KeySize}; at least 2048 bits are required");
            }

            key = rsa;
        }

        // A public-only PEM imports without error; make sure the private half is there.
        try
        {
            _ = key is ECDsa e2 ? e2.ExportParameters(true).D : ((RSA)key).ExportParameters(true).D;
        }
        catch (CryptographicException e)
        {
            key.Dispose();
            throw new InvalidOperationException($"signing key file '{path}' holds a public key only", e);
        }

        return new LocalKeySigner(key, algorithm, keyId);
    }

    public void Dispose() => _key.Dispose();
}
