using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.IdentityModel.Tokens;

namespace TokenBroker.Tokens;

/// <summary>
/// Verifies JWS signatures with a JSON Web Key. The public key object is built once per <see cref="JsonWebKey"/>
/// instance (a JWKS refresh brings new instances, so a rotated key is never served from the cache) and shared by
/// every request. Only the algorithms of the broker's allow-list are verified here: RS*, PS* and ES* with the
/// curve the algorithm names; anything else, or a key that cannot be imported, verifies nothing.
/// </summary>
internal static class JwkVerifier
{
    private static readonly ConditionalWeakTable<JsonWebKey, PublicKey> Keys = new();

    /// <summary>True when <paramref name="signature"/> is a valid <paramref name="algorithm"/> signature of <paramref name="signingInput"/>.</summary>
    public static bool Verify(JsonWebKey jwk, string algorithm, ReadOnlySpan<byte> signingInput, ReadOnlySpan<byte> signature)
    {
        if (!Parse(algorithm, out var family, out var hash))
        {
            return false;
        }

        var key = Keys.GetValue(jwk, static k => PublicKey.Import(k));

        // RFC 8017 8.1.2/8.2.2 step 1: an RSA signature is exactly as long as the modulus. OpenSSL also accepts one
        // with its leading zero octets dropped (a second encoding of the same signature), so the length is checked here.
        if (family != 'E' && (key.Rsa is null || signature.Length != Octets(key.Rsa)))
        {
            return false;
        }

        try
        {
            return family switch
            {
                'R' => key.Rsa is { KeySize: >= 2048 } rsa && rsa.VerifyData(signingInput, signature, hash, RSASignaturePadding.Pkcs1),
                'P' => key.Rsa is { KeySize: >= 2048 } pss && pss.VerifyData(signingInput, signature, hash, RSASignaturePadding.Pss),
                _ => key.EcDsa is { } ec && key.Algorithm == algorithm &&
                     ec.VerifyData(signingInput, signature, hash, DSASignatureFormat.IeeeP1363FixedFieldConcatenation),
            };
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    /// <summary>k, the length of the modulus in octets: the only length an RSA signature may have.</summary>
    private static int Octets(RSA rsa) => (rsa.KeySize + 7) / 8;

    private static bool Parse(string algorithm, out char family, out HashAlgorithmName hash)
    {
        (family, hash) = algorithm switch
        {
            "RS256" => ('R', HashAlgorithmName.SHA256),
            "RS384" => ('R', HashAlgorithmName.SHA384),
            "RS512" => ('R', HashAlgorithmName.SHA512),
            "PS256" => ('P', HashAlgorithmName.SHA256),
            "PS384" => ('P', HashAlgorithmName.SHA384),
            "PS512" => ('P', HashAlgorithmName.SHA512),
            "ES256" => ('E', HashAlgorithmName.SHA256),
            "ES384" => ('E', HashAlgorithmName.SHA384),
            "ES512" => ('E', HashAlgorithmName.SHA512),
            _ => ('\0', default),
        };
        return family != '\0';
    }

    /// <summary>The imported public key of one JWK: RSA, or ECDSA with the algorithm its curve implies; null members when unusable.</summary>
    private sealed class PublicKey
    {
        public RSA? Rsa { get; private init; }
        public ECDsa? EcDsa { get; private init; }
        public string? Algorithm { get; private init; }

        public static PublicKey Import(JsonWebKey jwk)
        {
            try
            {
                if (jwk.Kty == JsonWebAlgorithmsKeyTypes.RSA && !string.IsNullOrEmpty(jwk.N) && !string.IsNullOrEmpty(jwk.E))
                {
                    return new PublicKey { Rsa = RSA.Create(new RSAParameters { Modulus = Base64UrlEncoder.DecodeBytes(jwk.N), Exponent = Base64UrlEncoder.DecodeBytes(jwk.E) }) };
                }

                if (jwk.Kty == JsonWebAlgorithmsKeyTypes.EllipticCurve && !string.IsNullOrEmpty(jwk.X) && !string.IsNullOrEmpty(jwk.Y))
                {
                    var (curve, algorithm, size) = jwk.Crv switch
                    {
                        JsonWebKeyECTypes.P256 => (ECCurve.NamedCurves.nistP256, "ES256", 32),
                        JsonWebKeyECTypes.P384 => (ECCurve.NamedCurves.nistP384, "ES384", 48),
                        JsonWebKeyECTypes.P521 => (ECCurve.NamedCurves.nistP521, "ES512", 66),
                        _ => (default(ECCurve), null, 0),
                    };
                    var x = Base64UrlEncoder.DecodeBytes(jwk.X);
                    var y = Base64UrlEncoder.DecodeBytes(jwk.Y);
                    if (algorithm is null || x.Length != size || y.Length != size)
                    {
                        return new PublicKey();
                    }

                    // ImportParameters checks that the point is on the curve.
                    return new PublicKey { EcDsa = ECDsa.Create(new ECParameters { Curve = curve, Q = new ECPoint { X = x, Y = y } }), Algorithm = algorithm };
                }
            }
            catch (Exception e) when (e is CryptographicException or FormatException or ArgumentException)
            {
                return new PublicKey(); // an unusable key verifies nothing
            }

            return jwk.Kty == JsonWebAlgorithmsKeyTypes.RSA && jwk.X5c.Count > 0 ? FromCertificate(jwk.X5c[0]) : new PublicKey();
        }

        /// <summary>
        /// An RSA JWK with no <c>n</c>/<c>e</c> but an <c>x5c</c> chain: the public key of its first certificate (RFC 7517
        /// section 4.7), imported once like the parameters and held to the same rules (RSA of at least 2048 bits). The
        /// chain is not validated: the JWKS itself is the trust anchor, fetched over https from the issuer.
        /// </summary>
        private static PublicKey FromCertificate(string x5c)
        {
            try
            {
                using var certificate = X509CertificateLoader.LoadCertificate(Convert.FromBase64String(x5c));
                return new PublicKey { Rsa = certificate.GetRSAPublicKey() };
            }
            catch (Exception e) when (e is CryptographicException or FormatException)
            {
                return new PublicKey();
            }
        }
    }
}
