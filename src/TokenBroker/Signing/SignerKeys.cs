using System.Security.Cryptography;
using Microsoft.IdentityModel.Tokens;

namespace TokenBroker.Signing;

/// <summary>What every signer shares: the hash and padding of a JWS algorithm, and the public JWK of a key.</summary>
internal static class SignerKeys
{
    public static HashAlgorithmName HashFor(string algorithm) => algorithm[^3..] switch
    {
        "256" => HashAlgorithmName.SHA256,
        "384" => HashAlgorithmName.SHA384,
        _ => HashAlgorithmName.SHA512,
    };

    public static RSASignaturePadding PaddingFor(string algorithm) =>
        algorithm.StartsWith("PS", StringComparison.Ordinal) ? RSASignaturePadding.Pss : RSASignaturePadding.Pkcs1;

    /// <summary>
    /// The JWK a signer publishes: the public members, <c>kid</c> (<paramref name="keyId"/>, or the RFC 7638
    /// thumbprint when none is configured), <c>alg</c> and <c>use: sig</c>.
    /// </summary>
    public static JsonWebKey PublishedJwk(AsymmetricAlgorithm key, string algorithm, string? keyId)
    {
        var jwk = PublicJwk(key);
        jwk.Kid = keyId ?? Thumbprint(jwk);
        jwk.Alg = algorithm;
        jwk.Use = JsonWebKeyUseNames.Sig;
        return jwk;
    }

    /// <summary>The RFC 7638 thumbprint (base64url), over the required public members only.</summary>
    public static string Thumbprint(JsonWebKey jwk) => Base64UrlEncoder.Encode(jwk.ComputeJwkThumbprint());

    /// <summary>The public members only, as a JWK without kid/alg/use.</summary>
    public static JsonWebKey PublicJwk(AsymmetricAlgorithm key)
    {
        if (key is ECDsa ec)
        {
            var p = ec.ExportParameters(false);
            return new JsonWebKey
            {
                Kty = JsonWebAlgorithmsKeyTypes.EllipticCurve,
                Crv = p.Curve.Oid.Value == "1.3.132.0.34" || p.Curve.Oid.FriendlyName == "nistP384" ? JsonWebKeyECTypes.P384 : JsonWebKeyECTypes.P256,
                X = Base64UrlEncoder.Encode(p.Q.X),
                Y = Base64UrlEncoder.Encode(p.Q.Y),
            };
        }

        if (key is RSA rsa)
        {
            var p = rsa.ExportParameters(false);
            return new JsonWebKey
            {
                Kty = JsonWebAlgorithmsKeyTypes.RSA,
                N = Base64UrlEncoder.Encode(p.Modulus),
                E = Base64UrlEncoder.Encode(p.Exponent),
            };
        }

        throw new ArgumentException("unsupported key type", nameof(key));
    }
}
