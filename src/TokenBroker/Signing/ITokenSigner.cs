using Microsoft.IdentityModel.Tokens;

namespace TokenBroker.Signing;

/// <summary>
/// A signing key the broker can use. Implementations: <see cref="LocalKeySigner"/> (PEM file or generated key);
/// an HSM-backed signer plugs in behind the same interface. The private key never leaves the implementation.
/// </summary>
public interface ITokenSigner
{
    /// <summary>The <c>kid</c> published in the JWKS and set in every token header.</summary>
    string KeyId { get; }

    /// <summary>The JWS algorithm, e.g. ES256.</summary>
    string Algorithm { get; }

    /// <summary>The public key as a JWK (no private members).</summary>
    JsonWebKey PublicKey { get; }

    /// <summary>Signs the JWS signing input; ECDSA signatures are in the JWS (IEEE P1363) form.</summary>
    /// <exception cref="SigningUnavailableException">The key cannot sign right now.</exception>
    byte[] Sign(ReadOnlySpan<byte> signingInput);
}

/// <summary>The signer cannot be used right now (HSM session lost, key unreachable). The exchange answers 503.</summary>
public sealed class SigningUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
