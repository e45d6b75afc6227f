using System.Text.Json;
using TokenBroker.Configuration;

namespace TokenBroker.Signing;

/// <summary>
/// The broker's keys: the active signer and every key published in the JWKS. The JWKS document is rendered once,
/// since keys only change with configuration.
/// </summary>
public sealed class SigningKeyRing
{
    public SigningKeyRing(IReadOnlyList<ITokenSigner> keys)
    {
        if (keys.Count == 0)
        {
            throw new ArgumentException("at least one signing key is required", nameof(keys));
        }

        var duplicate = keys.GroupBy(k => k.KeyId, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new InvalidOperationException($"two signing keys share the kid '{duplicate.Key}'");
        }

        Keys = keys;
        Active = keys[0];
        JwksJson = RenderJwks(keys);
    }

    public ITokenSigner Active { get; }

    public IReadOnlyList<ITokenSigner> Keys { get; }

    /// <summary>The JWKS document: public members only.</summary>
    public byte[] JwksJson { get; }

    public IEnumerable<string> Algorithms => Keys.Select(k => k.Algorithm).Distinct(StringComparer.Ordinal);

    /// <summary>Builds the ring from configuration.</summary>
    /// <exception cref="InvalidOperationException">A key cannot be loaded; the message names it.</exception>
    public static SigningKeyRing FromSettings(ResolvedSettings settings)
    {
        var signers = new List<ITokenSigner>();
        foreach (var key in settings.SigningKeys)
        {
            signers.Add(key.Source switch
            {
                "generated" => LocalKeySigner.Generate(key.Algorithm, key.KeyId),
                _ => LocalKeySigner.FromPemFile(key.Path!, key.Algorithm, key.KeyId),
            });
        }

        return new SigningKeyRing(signers);
    }

    private static byte[] RenderJwks(IReadOnlyList<ITokenSigner> keys)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartArray("keys");
            foreach (var key in keys)
            {
                var jwk = key.PublicKey;
                w.WriteStartObject();
                w.WriteString("kty", jwk.Kty);
                w.WriteString("use", "sig");
                w.WriteString("alg", key.Algorithm);
                w.WriteString("kid", key.KeyId);
                if (jwk.Kty == "EC")
                {
                    w.WriteString("crv", jwk.Crv);
                    w.WriteString("x", jwk.X);
                    w.WriteString("y", jwk.Y);
                }
                else
                {
                    w.WriteString("n", jwk.N);
                    w.WriteString("e", jwk.E);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }
}
