using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using TokenBroker.Configuration;

namespace TokenBroker.Hosting;

/// <summary>
/// The HTTPS certificate from <c>Tls:CertificatePath</c>/<c>KeyPath</c>, re-read when either file changes (checked
/// at most every <see cref="CheckInterval"/> during handshakes), so a rotated certificate (cert-manager, ACME) is
/// served without a restart. A replacement that cannot be loaded is logged and the current certificate kept.
/// </summary>
internal sealed partial class TlsCertificate
{
    internal static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(10);

    private readonly string _certificatePath;
    private readonly string _keyPath;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private X509Certificate2 _current;
    private (DateTime Cert, DateTime Key) _stamps;
    private long _lastCheck;

    public TlsCertificate(string certificatePath, string keyPath, TimeProvider time)
    {
        _certificatePath = certificatePath;
        _keyPath = keyPath;
        _time = time;
        _stamps = Stamps();
        _current = Load(certificatePath, keyPath);
        _lastCheck = time.GetTimestamp();
    }

    public ILogger? Logger { get; set; }

    /// <summary>Loads a PEM certificate and its key into a certificate SslStream can use on every platform.</summary>
    public static X509Certificate2 Load(string certificatePath, string keyPath)
    {
        using var pem = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);

        // A PEM-loaded key is ephemeral; Windows' TLS stack needs a persisted one, so round-trip through PKCS#12.
        return OperatingSystem.IsWindows()
            ? X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null)
            : new X509Certificate2(pem);
    }

    /// <summary>The certificate to present now.</summary>
    public X509Certificate2 Current
    {
        get
        {
            var now = _time.GetTimestamp();
            lock (_gate)
            {
                if (_time.GetElapsedTime(_lastCheck, now) < CheckInterval)
                {
                    return _current;
                }

                _lastCheck = now;
                var stamps = Stamps();
                if (stamps == _stamps)
                {
                    return _current;
                }

                try
                {
                    _current = Load(_certificatePath, _keyPath);
                    _stamps = stamps;
                    if (Logger is not null)
                    {
                        Log.Reloaded(Logger, _certificatePath, _current.Subject, _current.NotAfter);
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
                {
                    // Half-written files during a rotation are normal: keep serving the old certificate, try again later.
                    if (Logger is not null)
                    {
                        Log.ReloadFailed(Logger, _certificatePath, e.Message);
                    }
                }

                return _current;
            }
        }
    }

    /// <summary>TLS 1.2 or 1.3 on every https endpoint; the configured certificate when there is one.</summary>
    public static void Configure(KestrelServerOptions kestrel, TlsCertificate? certificate) =>
        kestrel.ConfigureHttpsDefaults(https =>
        {
            https.SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13;
            if (certificate is not null)
            {
                https.ServerCertificateSelector = (_, _) => certificate.Current;
            }
        });

    private (DateTime, DateTime) Stamps() => (File.GetLastWriteTimeUtc(_certificatePath), File.GetLastWriteTimeUtc(_keyPath));

    private static partial class Log
    {
        [LoggerMessage(EventId = 1600, Level = LogLevel.Information, Message = "TLS certificate {Path} reloaded: {Subject}, valid until {NotAfter:O}")]
        public static partial void Reloaded(ILogger logger, string path, string subject, DateTime notAfter);

        [LoggerMessage(EventId = 1601, Level = LogLevel.Warning, Message = "TLS certificate {Path} changed but cannot be loaded ({Reason}); still serving the previous one")]
        public static partial void ReloadFailed(ILogger logger, string path, string reason);
    }
}
