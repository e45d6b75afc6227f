using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace TokenBroker.State.Redis;

/// <summary>
/// The TLS policy of every connection to Redis: the SE.Redis data connections, the exchange's direct connection
/// (<see cref="RespPipe"/>) and the Sentinel connections all validate the server and pick the client certificate
/// here, so the three cannot drift apart.
/// <para>
/// The server's certificate must be valid for the host name or IP address connected to (a name mismatch always
/// fails), and its chain must build without any error: to one of the roots in
/// <see cref="RedisStateOptions.CaCertificateFile"/> only when that is set, to the system store otherwise.
/// Revocation is not checked (private CAs rarely publish CRLs or OCSP; SslStream does not check by default either).
/// </para>
/// </summary>
internal sealed partial class RedisTls : IDisposable
{
    // A CA bundle or a certificate and its key are a few kilobytes; the limit comes before reading and parsing.
    private const long MaxPemBytes = 1024 * 1024;

    private static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1", "Server Authentication");

    private readonly X509Certificate2Collection? _roots;
    private readonly HashSet<string>? _rootThumbprints;
    private readonly X509Certificate2? _clientCertificate;
    private readonly ILogger _logger;

    private RedisTls(X509Certificate2Collection? roots, X509Certificate2? clientCertificate, ILogger logger)
    {
        _roots = roots;
        _logger = logger;
        _rootThumbprints = roots?.Select(r => r.GetCertHashString(HashAlgorithmName.SHA256)).ToHashSet(StringComparer.Ordinal);
        _clientCertificate = clientCertificate;
    }

    /// <summary>The client certificate presented to Redis, or null.</summary>
    public X509Certificate2? ClientCertificate => _clientCertificate;

    /// <summary>Whether a custom CA replaces the system store.</summary>
    public bool HasCustomRoots => _roots is not null;

    /// <summary>
    /// Loads the CA and client certificate files named in <paramref name="options"/> (throws when one is unusable);
    /// refused server certificates are logged to <paramref name="logger"/> with the reason.
    /// </summary>
    public static RedisTls Create(RedisStateOptions options, ILogger logger) => new(
        options.CaCertificateFile is { } ca ? LoadRoots(ca) : null,
        options.ClientCertificateFile is { } cert && options.ClientKeyFile is { } key ? LoadClientCertificate(cert, key) : null,
        logger);

    /// <summary>The problems with the TLS files named in <paramref name="options"/>, as configuration errors; none when they load.</summary>
    public static List<string> FileErrors(RedisStateOptions options, string prefix)
    {
        var errors = new List<string>();
        if (options.CaCertificateFile is { } ca)
        {
            try
            {
                DisposeAll(LoadRoots(ca));
            }
            catch (Exception e) when (IsLoadFailure(e))
            {
                errors.Add($"{prefix}CaCertificateFile '{ca}' cannot be used: {e.Message}");
            }
        }

        if ((options.ClientCertificateFile is null) != (options.ClientKeyFile is null))
        {
            errors.Add($"{prefix}ClientCertificateFile and {prefix}ClientKeyFile go together: set both (mutual TLS) or neither");
        }
        else if (options.ClientCertificateFile is { } cert && options.ClientKeyFile is { } key)
        {
            try
            {
                LoadClientCertificate(cert, key).Dispose();
            }
            catch (Exception e) when (IsLoadFailure(e))
            {
                errors.Add($"{prefix}ClientCertificateFile '{cert}' with {prefix}ClientKeyFile '{key}' cannot be used: {e.Message}");
            }
        }

        return errors;
    }

    /// <summary>The server certificate check of every Redis connection (SslStream's callback).</summary>
    public bool ValidateServerCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        var reason = Refusal(certificate, chain, errors);
        if (reason is not null)
        {
            Log.CertificateRefused(_logger, (sender as SslStream)?.TargetHostName ?? "?", certificate?.Subject ?? "none", certificate?.Issuer ?? "none", reason);
        }

        return reason is null;
    }

    /// <summary>Why the certificate is refused, or null when it is accepted.</summary>
    private string? Refusal(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        // Fail closed: no certificate, or one for another name, is never accepted, whatever the trust.
        if (certificate is null || (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0)
        {
            return "no certificate";
        }

        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return "it is not valid for the host name or address connected to";
        }

        if (_roots is null)
        {
            return errors == SslPolicyErrors.None ? null : "its chain does not build to a root of the system store: " + Statuses(chain);
        }

        // SslStream built its chain against the system store; build it again against the configured roots only,
        // with the intermediates the server sent.
        using var leaf = new X509Certificate2(certificate);
        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(_roots);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        custom.ChainPolicy.VerificationFlags = X509VerificationFlags.NoFlag;
        custom.ChainPolicy.ApplicationPolicy.Add(ServerAuthentication);
        if (chain is not null)
        {
            custom.ChainPolicy.ExtraStore.AddRange(chain.ChainPolicy.ExtraStore);
        }

        if (!custom.Build(leaf))
        {
            // Any status at all (expired, wrong usage, unknown root, ...) refuses.
            return "its chain does not build to a root of CaCertificateFile: " + Statuses(custom);
        }

        // The anchor must be one of ours (CustomRootTrust already ensures it; checked again, cheaply).
        var elements = custom.ChainElements;
        return elements.Count > 0 && _rootThumbprints!.Contains(elements[elements.Count - 1].Certificate.GetCertHashString(HashAlgorithmName.SHA256))
            ? null
            : "its chain ends outside CaCertificateFile";
    }

    private static string Statuses(X509Chain? chain) =>
        chain is null || chain.ChainStatus.Length == 0
            ? "no chain"
            : string.Join("; ", chain.ChainStatus.Select(s => $"{s.Status}: {s.StatusInformation.Trim()}").Distinct(StringComparer.Ordinal));

    /// <summary>The client certificate for SslStream's selection callback (null: none, also when one was not asked for).</summary>
    public X509Certificate? SelectClientCertificate(object sender, string targetHost, X509CertificateCollection localCertificates, X509Certificate? remoteCertificate, string[] acceptableIssuers) =>
        _clientCertificate;

    /// <summary>Options for <see cref="SslStream.AuthenticateAsClientAsync(SslClientAuthenticationOptions, CancellationToken)"/>.</summary>
    public SslClientAuthenticationOptions ClientOptions(string targetHost)
    {
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            RemoteCertificateValidationCallback = ValidateServerCertificate,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            EncryptionPolicy = EncryptionPolicy.RequireEncryption,
        };
        if (_clientCertificate is not null)
        {
            options.ClientCertificates = [_clientCertificate];
            options.LocalCertificateSelectionCallback = SelectClientCertificate;
        }

        return options;
    }

    /// <summary>
    /// Makes an SE.Redis configuration use this policy. The handlers are set even without a client certificate, so
    /// that SE.Redis 1.x's ambient certificate (the <c>SERedis_ClientCertPfxPath</c> environment variable) is never
    /// picked up behind the configuration's back.
    /// </summary>
    public void Apply(ConfigurationOptions config)
    {
        config.CertificateValidation += ValidateServerCertificate;
        config.CertificateSelection += SelectClientCertificate;
    }

    public void Dispose()
    {
        _clientCertificate?.Dispose();
        if (_roots is not null)
        {
            DisposeAll(_roots);
        }
    }

    private static void DisposeAll(X509Certificate2Collection certificates)
    {
        foreach (var certificate in certificates)
        {
            certificate.Dispose();
        }
    }

    private static X509Certificate2Collection LoadRoots(string path)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPem(ReadPem(path));
        if (roots.Count == 0)
        {
            throw new CryptographicException("the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        }

        return roots;
    }

    private static X509Certificate2 LoadClientCertificate(string certificatePath, string keyPath)
    {
        using var pem = X509Certificate2.CreateFromPem(ReadPem(certificatePath), ReadPem(keyPath));
        if (!pem.HasPrivateKey)
        {
            throw new CryptographicException("the key does not match the certificate");
        }

        // A PEM-loaded key is ephemeral; Windows' TLS stack needs a persisted one, so round-trip through PKCS#12.
        // OpenSSL (Linux) uses the ephemeral key as it is.
        return OperatingSystem.IsWindows()
            ? X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null)
            : new X509Certificate2(pem);
    }

    private static string ReadPem(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new FileNotFoundException("the file does not exist", path);
        }

        if (info.Length > MaxPemBytes)
        {
            throw new CryptographicException($"the file is larger than {MaxPemBytes / 1024} KiB");
        }

        return File.ReadAllText(path);
    }

    private static bool IsLoadFailure(Exception e) =>
        e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException;

    private static partial class Log
    {
        [LoggerMessage(EventId = 3008, Level = LogLevel.Warning, Message = "Redis TLS: refused the certificate of {Host} (subject '{Subject}', issuer '{Issuer}'): {Reason}; the connection fails closed")]
        public static partial void CertificateRefused(ILogger logger, string host, string subject, string issuer, string reason);
    }
}
