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
    public static SigningKeyRing FromSettings(ResolvedSettings settings, TimeProvider time)
    {
        var signers = new List<ITokenSigner>();
        try
        {
            for (var i = 0; i < settings.SigningKeys.Count; i++)
            {
                signers.Add(Open($"Signing:Keys:{i}", settings.SigningKeys[i], settings.SigningReopenInterval, time));
            }

            return new SigningKeyRing(signers);
        }
        catch
        {
            foreach (var signer in signers)
            {
                (signer as IDisposable)?.Dispose();
            }

            throw;
        }
    }

    /// <summary>Opens one configured key.</summary>
    /// <exception cref="InvalidOperationException">The key cannot be loaded; the message names it (and never a PIN).</exception>
    public static ITokenSigner Open(string name, SigningKeyOptions key, TimeSpan reopenInterval, TimeProvider time)
    {
        switch (key.Source)
        {
            case "generated":
                return LocalKeySigner.Generate(key.Algorithm, key.KeyId);
            case "pkcs11":
                if (!OperatingSystem.IsLinux())
                {
                    throw new InvalidOperationException($"{name}: pkcs11 keys are supported on Linux only");
                }

                var pin = key.PinFile is { Length: > 0 } file ? Pkcs11Signer.PinFromFile(file) : Pkcs11Signer.PinFromEnvironment(key.PinEnvironmentVariable!);
                return Pkcs11Signer.Open(name, Pkcs11UriCheck.ForPrivateKey(key.Uri!), pin, key.Algorithm, key.KeyId, time, reopenInterval);
            default:
                try
                {
                    return LocalKeySigner.FromPemFile(key.Path!, key.Algorithm, key.KeyId);
                }
                catch (InvalidOperationException e)
                {
                    throw new InvalidOperationException($"{name}: {e.Message}", e);
                }
        }
    }

    /// <summary>Gives HSM signers the host's logging, for faults and reopens at run time.</summary>
    public void UseLogging(ILoggerFactory loggers)
    {
        foreach (var key in Keys)
        {
            if (OperatingSystem.IsLinux() && key is Pkcs11Signer hsm)
            {
                hsm.UseLogger(loggers.CreateLogger<Pkcs11Signer>());
            }
        }
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
