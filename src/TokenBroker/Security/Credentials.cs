using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Net.Http.Headers;
using TokenBroker.Tokens;

namespace TokenBroker.Security;

/// <summary>
/// A stored API credential: a name and the salted SHA-256 of its secret, written in configuration as
/// <c>name:sha256:&lt;salt hex&gt;:&lt;hash hex&gt;</c>.
/// <para>
/// Secrets are 256 random bits (<see cref="Create"/>), so a fast hash is enough: nobody can guess them, and a slow
/// hash (PBKDF2) would only let unauthenticated callers spend the broker's CPU on every request. The salt keeps the
/// same secret from hashing alike in two deployments. Comparison is constant-time.
/// </para>
/// </summary>
public sealed partial record CredentialHash(string Name, byte[] Salt, byte[] Hash)
{
    public const string SecretPrefix = "tbs_";
    private const int SaltBytes = 16;
    private const int SecretBytes = 32;

    /// <summary>Parses one configuration line; null with <paramref name="error"/> when it is not a credential hash.</summary>
    public static CredentialHash? Parse(string line, out string? error)
    {
        error = null;
        var text = line.Trim();
        if (text.StartsWith(SecretPrefix, StringComparison.Ordinal) || text.Contains(":" + SecretPrefix, StringComparison.Ordinal))
        {
            error = "looks like a secret, not a hash: configure the hash line printed by 'tokenbroker credentials create' and keep the secret with the caller";
            return null;
        }

        var parts = text.Split(':');
        if (parts.Length != 4 || parts[1] != "sha256" || !NameRegex().IsMatch(parts[0]))
        {
            error = "must be name:sha256:<32 hex salt>:<64 hex hash> with a name of 1 to 64 characters of [A-Za-z0-9._-]";
            return null;
        }

        if (parts[2].Length != SaltBytes * 2 || parts[3].Length != 64 || !IsHex(parts[2]) || !IsHex(parts[3]))
        {
            error = $"credential '{parts[0]}': salt must be 32 and hash 64 lower-case hex characters";
            return null;
        }

        return new CredentialHash(parts[0], Convert.FromHexString(parts[2]), Convert.FromHexString(parts[3]));
    }

    /// <summary>A new credential: the secret (shown once, to the caller) and the line to configure.</summary>
    public static (string Secret, string Line) Create(string name)
    {
        if (!NameRegex().IsMatch(name))
        {
            throw new ArgumentException("name must be 1 to 64 characters of [A-Za-z0-9._-]", nameof(name));
        }

        var secret = SecretPrefix + Base64Url.Encode(RandomNumberGenerator.GetBytes(SecretBytes));
        var salt = RandomNumberGenerator.GetBytes(SaltBytes);
        var hash = Digest(salt, secret);
        return (secret, $"{name}:sha256:{Convert.ToHexStringLower(salt)}:{Convert.ToHexStringLower(hash)}");
    }

    /// <summary>Constant-time check of a presented secret.</summary>
    public bool Matches(string secret) => CryptographicOperations.FixedTimeEquals(Digest(Salt, secret), Hash);

    public static bool IsValidName(string name) => NameRegex().IsMatch(name);

    private static byte[] Digest(byte[] salt, string secret)
    {
        var secretBytes = Encoding.UTF8.GetBytes(secret);
        var input = new byte[salt.Length + secretBytes.Length];
        salt.CopyTo(input, 0);
        secretBytes.CopyTo(input, salt.Length);
        return SHA256.HashData(input);
    }

    private static bool IsHex(string s) => s.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f');

    [GeneratedRegex(@"\A[A-Za-z0-9._-]{1,64}\z", RegexOptions.CultureInvariant)]
    private static partial Regex NameRegex();
}

/// <summary>
/// The credentials of one scope (admin or introspection). Callers present HTTP Basic (<c>name:secret</c>) or a
/// Bearer secret. Every configured credential is checked (no early exit) so timing does not reveal which exists.
/// </summary>
public sealed class CredentialSet(string scope, IReadOnlyList<CredentialHash> credentials)
{
    private const int MaxHeaderLength = 1024;

    public string Scope { get; } = scope;

    public int Count => credentials.Count;

    /// <summary>The name of the credential the request carries, or null (missing, malformed or wrong).</summary>
    public string? Authenticate(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        if (header.Length == 0 || header.Length > MaxHeaderLength || credentials.Count == 0 || request.Headers.Authorization.Count != 1)
        {
            return null;
        }

        string? name = null;
        string secret;
        if (header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            string decoded;
            try
            {
                decoded = new UTF8Encoding(false, true).GetString(Convert.FromBase64String(header[6..].Trim()));
            }
            catch (Exception e) when (e is FormatException or DecoderFallbackException)
            {
                return null;
            }

            var colon = decoded.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                return null;
            }

            name = decoded[..colon];
            secret = decoded[(colon + 1)..];
        }
        else if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            secret = header[7..].Trim();
        }
        else
        {
            return null;
        }

        string? found = null;
        foreach (var credential in credentials)
        {
            var nameOk = name is null || string.Equals(name, credential.Name, StringComparison.Ordinal);
            if (credential.Matches(secret) && nameOk && found is null)
            {
                found = credential.Name;
            }
        }

        return found;
    }

    /// <summary>The challenge sent with 401.</summary>
    public string Challenge => $"Basic realm=\"tokenbroker-{Scope}\", charset=\"UTF-8\"";

    internal static string HeaderName => HeaderNames.WWWAuthenticate;
}
