using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace TokenBroker.Testing;

/// <summary>
/// A throw-away PKI for TLS tests, written as PEM files into a temporary directory: CAs, and server and client
/// certificates they issue (ECDSA P-256; leaves valid from an hour ago for a day unless made expired, CAs a little longer).
/// </summary>
internal sealed class TestPki : IDisposable
{
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");

    public TestPki() => Directory = System.IO.Directory.CreateTempSubdirectory("tokenbroker-pki-").FullName;

    public string Directory { get; }

    /// <summary>A self-signed CA; its certificate is written to <c>NAME.crt</c>.</summary>
    public TestCa CreateCa(string name)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-3), DateTimeOffset.UtcNow.AddDays(2));
        var path = Path.Combine(Directory, name + ".crt");
        File.WriteAllText(path, certificate.ExportCertificatePem());
        return new TestCa(certificate, path, this);
    }

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    internal sealed class TestCa(X509Certificate2 certificate, string certificateFile, TestPki pki, string chainPem = "")
    {
        public X509Certificate2 Certificate { get; } = certificate;

        /// <summary>
        /// An intermediate CA issued by this one; the certificates it issues are written followed by its own
        /// certificate (and those of the CAs above it, up to the root, which is left out), as servers send them.
        /// </summary>
        public TestCa IssueIntermediate(string name)
        {
            var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
            request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
            using var issued = request.Create(Certificate, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1), Serial());
            var certificate = issued.CopyWithPrivateKey(key);
            var path = Path.Combine(pki.Directory, name + ".crt");
            File.WriteAllText(path, certificate.ExportCertificatePem());
            return new TestCa(certificate, path, pki, certificate.ExportCertificatePem() + "\n" + chainPem);
        }

        /// <summary>The CA certificate as PEM.</summary>
        public string CertificateFile { get; } = certificateFile;

        /// <summary>
        /// Issues a certificate for <paramref name="dnsNames"/> and <paramref name="addresses"/> (valid for server and
        /// client authentication, as Redis uses one certificate for both on replication links), written to
        /// <c>NAME.crt</c> and <c>NAME.key</c>.
        /// </summary>
        public (string CertFile, string KeyFile) Issue(string name, string[] dnsNames, IPAddress[] addresses, bool server = true, bool client = true, bool expired = false)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
            var usages = new OidCollection();
            if (server)
            {
                usages.Add(ServerAuth);
            }

            if (client)
            {
                usages.Add(ClientAuth);
            }

            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(usages, false));
            if (dnsNames.Length + addresses.Length > 0)
            {
                var san = new SubjectAlternativeNameBuilder();
                foreach (var dns in dnsNames)
                {
                    san.AddDnsName(dns);
                }

                foreach (var address in addresses)
                {
                    san.AddIpAddress(address);
                }

                request.CertificateExtensions.Add(san.Build());
            }

            request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
            var (notBefore, notAfter) = expired ? (DateTimeOffset.UtcNow.AddDays(-2), DateTimeOffset.UtcNow.AddHours(-2)) : (DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1));
            using var issued = request.Create(Certificate, notBefore, notAfter, Serial());
            var certFile = Path.Combine(pki.Directory, name + ".crt");
            var keyFile = Path.Combine(pki.Directory, name + ".key");
            File.WriteAllText(certFile, issued.ExportCertificatePem() + "\n" + chainPem);
            File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
            return (certFile, keyFile);
        }

        private static byte[] Serial()
        {
            var serial = RandomNumberGenerator.GetBytes(16);
            serial[0] &= 0x7f;
            return serial;
        }
    }
}
