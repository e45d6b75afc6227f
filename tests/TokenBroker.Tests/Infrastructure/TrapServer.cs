using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using TokenBroker.Demo;

namespace TokenBroker.Tests.Infrastructure;

/// <summary>
/// An attacker's key pair: a fresh RSA key that no trusted provider publishes, its public JWK and a self-signed
/// certificate, for tokens that try to bring their own key (<c>jwk</c>, <c>jku</c>, <c>x5u</c>, <c>x5c</c>).
/// </summary>
internal sealed class Attacker : IDisposable
{
    public RSA Key { get; } = RSA.Create(2048);

    public string KeyId { get; } = "attacker-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));

    public JsonObject PublicJwk()
    {
        var p = Key.ExportParameters(false);
        return new JsonObject { ["kty"] = "RSA", ["use"] = "sig", ["alg"] = "RS256", ["kid"] = KeyId, ["n"] = JwtParts.B64(p.Modulus!), ["e"] = JwtParts.B64(p.Exponent!) };
    }

    public string Jwks() => new JsonObject { ["keys"] = new JsonArray(PublicJwk()) }.ToJsonString();

    /// <summary>A self-signed certificate for the attacker's key, DER in standard base64 (as <c>x5c</c> carries it).</summary>
    public string CertificateBase64()
    {
        var request = new CertificateRequest("CN=token.actions.githubusercontent.com", Key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return Convert.ToBase64String(certificate.RawData);
    }

    /// <summary>Signs <paramref name="header"/> and <paramref name="payload"/> with the attacker's key (RS256).</summary>
    public string Sign(JsonObject header, JsonObject payload)
    {
        var input = JwtParts.B64(header.ToJsonString()) + "." + JwtParts.B64(payload.ToJsonString());
        var signature = Key.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        return input + "." + JwtParts.B64(signature);
    }

    public void Dispose() => Key.Dispose();
}

/// <summary>
/// A real Kestrel server on loopback that the broker must never call: it counts every request on any path and
/// answers with the attacker's JWKS, so a broker that followed a <c>jku</c> or <c>x5u</c> would find a key that
/// verifies the forged token.
/// </summary>
internal sealed class TrapServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _hits;

    private TrapServer(WebApplication app, string url)
    {
        _app = app;
        Url = url;
    }

    public string Url { get; }

    /// <summary>Requests received, on any path and with any method.</summary>
    public int Hits => Volatile.Read(ref _hits);

    public static async Task<TrapServer> StartAsync(string jwks)
    {
        var url = $"http://127.0.0.1:{FakeCiIssuer.FreePort()}";
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(url);
        var app = builder.Build();
        var trap = new TrapServer(app, url);
        app.Run(async http =>
        {
            Interlocked.Increment(ref trap._hits);
            http.Response.ContentType = "application/json";
            await http.Response.WriteAsync(jwks);
        });
        await app.StartAsync();
        return trap;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
