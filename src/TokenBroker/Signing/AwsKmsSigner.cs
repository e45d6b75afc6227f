using System.Formats.Asn1;
using System.Security.Cryptography;
using Amazon;
using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using Amazon.Runtime;
using Microsoft.IdentityModel.Tokens;

namespace TokenBroker.Signing;

/// <summary>
/// Experimental: signs with an asymmetric AWS KMS key (<c>Source: aws-kms</c>). The private key never leaves KMS;
/// the broker hashes the signing input and sends the digest (<c>MessageType: DIGEST</c>). The public key is read
/// once with <c>GetPublicKey</c> when the key is opened. Credentials come from the standard AWS chain (environment,
/// web identity, ECS/EC2 role), never from configuration. Every signature is verified against the published public
/// key before it is used, so a wrong key or a corrupted answer fails closed.
/// </summary>
public sealed class AwsKmsSigner : ITokenSigner, IDisposable
{
    private readonly IAmazonKeyManagementService _kms;
    private readonly string _kmsKeyId;
    private readonly AsymmetricAlgorithm _public;
    private readonly HashAlgorithmName _hash;
    private readonly SigningAlgorithmSpec _spec;

    private AwsKmsSigner(IAmazonKeyManagementService kms, string kmsKeyId, AsymmetricAlgorithm publicKey, string algorithm, string? keyId)
    {
        _kms = kms;
        _kmsKeyId = kmsKeyId;
        _public = publicKey;
        Algorithm = algorithm;
        _hash = SignerKeys.HashFor(algorithm);
        _spec = SpecFor(algorithm);
        PublicKey = SignerKeys.PublishedJwk(publicKey, algorithm, keyId);
        KeyId = PublicKey.Kid;
    }

    public string KeyId { get; }

    public string Algorithm { get; }

    public JsonWebKey PublicKey { get; }

    /// <summary>Opens a KMS key: reads its public key and checks that it fits the algorithm.</summary>
    /// <param name="name">How messages name the key (<c>Signing:Keys:N</c>).</param>
    /// <param name="kmsKeyId">Key id, key ARN, alias name (<c>alias/...</c>) or alias ARN.</param>
    /// <param name="region">The AWS region, e.g. eu-west-1.</param>
    /// <param name="serviceUrl">An endpoint override (VPC endpoint, FIPS endpoint, a test double); null for the region's default.</param>
    /// <param name="algorithm">The JWS algorithm; the key's spec must fit it.</param>
    /// <param name="keyId">The kid; null for the public key's RFC 7638 thumbprint.</param>
    /// <param name="timeout">Per-call timeout of the KMS client.</param>
    /// <exception cref="InvalidOperationException">The key cannot be read or does not fit; the message names it.</exception>
    public static AwsKmsSigner Open(string name, string kmsKeyId, string region, string? serviceUrl, string algorithm, string? keyId, TimeSpan timeout)
    {
        var config = new AmazonKeyManagementServiceConfig
        {
            Timeout = timeout,
            MaxErrorRetry = 1,
        };
        if (serviceUrl is not null)
        {
            config.ServiceURL = serviceUrl;
            config.AuthenticationRegion = region;
        }
        else
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(region);
        }

        var kms = new AmazonKeyManagementServiceClient(config);
        try
        {
            var answer = kms.GetPublicKeyAsync(new GetPublicKeyRequest { KeyId = kmsKeyId }).GetAwaiter().GetResult();
            if (answer.KeyUsage != KeyUsageType.SIGN_VERIFY)
            {
                throw new InvalidOperationException($"{name}: AWS KMS key '{kmsKeyId}' has key usage {answer.KeyUsage}, not SIGN_VERIFY");
            }

            if (answer.SigningAlgorithms is { Count: > 0 } supported && !supported.Contains(SpecFor(algorithm)))
            {
                throw new InvalidOperationException($"{name}: AWS KMS key '{kmsKeyId}' ({answer.KeySpec}) does not support {SpecFor(algorithm)} for {algorithm}");
            }

            var spki = answer.PublicKey.ToArray();
            AsymmetricAlgorithm publicKey = algorithm.StartsWith("ES", StringComparison.Ordinal) ? ECDsa.Create() : RSA.Create();
            try
            {
                publicKey.ImportSubjectPublicKeyInfo(spki, out _);
                CheckFits(name, publicKey, algorithm);
            }
            catch
            {
                publicKey.Dispose();
                throw;
            }

            return new AwsKmsSigner(kms, kmsKeyId, publicKey, algorithm, keyId);
        }
        catch (Exception e) when (e is AmazonServiceException or AmazonClientException or CryptographicException or HttpRequestException or TaskCanceledException)
        {
            kms.Dispose();
            throw new InvalidOperationException($"{name}: AWS KMS key '{kmsKeyId}' cannot be read: {e.GetType().Name}: {e.Message}", e);
        }
        catch
        {
            kms.Dispose();
            throw;
        }
    }

    public byte[] Sign(ReadOnlySpan<byte> signingInput)
    {
        var digest = CryptographicOperations.HashData(_hash, signingInput);
        byte[] der;
        try
        {
            // ITokenSigner is synchronous (the HSM path is a native call); a KMS call blocks this request's thread.
            var answer = _kms.SignAsync(new SignRequest
            {
                KeyId = _kmsKeyId,
                Message = new MemoryStream(digest),
                MessageType = MessageType.DIGEST,
                SigningAlgorithm = _spec,
            }).GetAwaiter().GetResult();
            der = answer.Signature.ToArray();
        }
        catch (Exception e) when (e is AmazonServiceException or AmazonClientException or HttpRequestException or TaskCanceledException or IOException)
        {
            throw new SigningUnavailableException($"AWS KMS key '{KeyId}' failed to sign: {e.GetType().Name}", e);
        }

        try
        {
            if (_public is ECDsa ec)
            {
                var jose = DerToJose(der, (ec.KeySize + 7) / 8);
                if (!ec.VerifyHash(digest, jose))
                {
                    throw new SigningUnavailableException($"AWS KMS key '{KeyId}' returned a signature that does not verify with its public key");
                }

                return jose;
            }

            var rsa = (RSA)_public;
            if (!rsa.VerifyHash(digest, der, _hash, SignerKeys.PaddingFor(Algorithm)))
            {
                throw new SigningUnavailableException($"AWS KMS key '{KeyId}' returned a signature that does not verify with its public key");
            }

            return der;
        }
        catch (Exception e) when (e is AsnContentException or CryptographicException)
        {
            throw new SigningUnavailableException($"AWS KMS key '{KeyId}' returned a malformed signature", e);
        }
    }

    /// <summary>An ECDSA signature as KMS returns it (DER SEQUENCE of two INTEGERs) in the JWS form: R || S, each left-padded to the field size.</summary>
    internal static byte[] DerToJose(byte[] der, int fieldSize)
    {
        var reader = new AsnReader(der, AsnEncodingRules.DER);
        var sequence = reader.ReadSequence();
        reader.ThrowIfNotEmpty();
        var r = sequence.ReadIntegerBytes().Span;
        var s = sequence.ReadIntegerBytes().Span;
        sequence.ThrowIfNotEmpty();
        var jose = new byte[2 * fieldSize];
        Place(r, jose.AsSpan(0, fieldSize));
        Place(s, jose.AsSpan(fieldSize, fieldSize));
        return jose;

        static void Place(ReadOnlySpan<byte> integer, Span<byte> target)
        {
            // DER integers are signed: a leading zero byte keeps a high bit positive.
            while (integer.Length > 1 && integer[0] == 0)
            {
                integer = integer[1..];
            }

            if (integer.Length > target.Length)
            {
                throw new AsnContentException("signature component longer than the curve's field");
            }

            integer.CopyTo(target[(target.Length - integer.Length)..]);
        }
    }

    private static SigningAlgorithmSpec SpecFor(string algorithm) => algorithm switch
    {
        "ES256" => SigningAlgorithmSpec.ECDSA_SHA_256,
        "ES384" => SigningAlgorithmSpec.ECDSA_SHA_384,
        "RS256" => SigningAlgorithmSpec.RSASSA_PKCS1_V1_5_SHA_256,
        "PS256" => SigningAlgorithmSpec.RSASSA_PSS_SHA_256,
        _ => throw new ArgumentException($"unsupported algorithm {algorithm}", nameof(algorithm)),
    };

    private static void CheckFits(string name, AsymmetricAlgorithm key, string algorithm)
    {
        var fits = (algorithm, key) switch
        {
            ("ES256", ECDsa ec) => ec.KeySize == 256,
            ("ES384", ECDsa ec) => ec.KeySize == 384,
            ("RS256" or "PS256", RSA rsa) => rsa.KeySize >= 2048,
            _ => false,
        };
        if (!fits)
        {
            throw new InvalidOperationException($"{name}: the AWS KMS key ({key.GetType().Name}, {key.KeySize} bits) does not fit {algorithm}");
        }
    }

    public void Dispose()
    {
        _kms.Dispose();
        _public.Dispose();
    }
}
