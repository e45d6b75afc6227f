using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Tokens;

namespace TokenBroker.Demo;

/// <summary>
/// A stand-in CI token issuer on loopback for the demo and the tests: a real Kestrel server publishing OIDC
/// discovery and a JWKS for one or more issuer paths (e.g. <c>/github</c>, <c>/gitlab</c>), and minting RS256 job
/// tokens. It also serves an Actions-style ID token endpoint (<c>GET {issuer}/_apis/token?audience=...</c> with a
/// bearer request token), as the GitHub runner does for <c>ACTIONS_ID_TOKEN_REQUEST_URL</c>.
/// </summary>
internal sealed class FakeCiIssuer : IAsyncDisposable
{
    private static readonly string[] IdTokenOnly = ["id_token"];
    private static readonly string[] PublicOnly = ["public"];
    private static readonly string[] Rs256Only = ["RS256"];

    private readonly WebApplication _app;
    private readonly Dictionary<string, IssuerKeys> _issuers = new(StringComparer.Ordinal);
    private int _discoveryHits;
    private int _jwksHits;

    private FakeCiIssuer(WebApplication app, string baseUrl)
    {
        _app = app;
        BaseUrl = baseUrl;
        RequestToken = Base64Url.Encode(RandomNumberGenerator.GetBytes(24));
    }

    public string BaseUrl { get; }

    /// <summary>The clock used for <c>iat</c>, <c>nbf</c> and <c>exp</c>.</summary>
    public TimeProvider Time { get; set; } = TimeProvider.System;

    /// <summary>The bearer token the Actions-style endpoint requires (ACTIONS_ID_TOKEN_REQUEST_TOKEN).</summary>
    public string RequestToken { get; }

    public int DiscoveryHits => Volatile.Read(ref _discoveryHits);

    /// <summary>Discovery requests for one issuer name.</summary>
    public int DiscoveryHitsFor(string name) => _hitsByName.GetValueOrDefault(name);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _hitsByName = new(StringComparer.Ordinal);

    public int JwksHits => Volatile.Read(ref _jwksHits);

    /// <summary>JWKS requests for one issuer name.</summary>
    public int JwksHitsFor(string name) => _jwksHitsByName.GetValueOrDefault(name);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _jwksHitsByName = new(StringComparer.Ordinal);

    /// <summary>When true, discovery and JWKS answer 503 (to test outages).</summary>
    public bool Down { get; set; }

    /// <summary>Extra bytes added to every JWKS response (to test size caps).</summary>
    public int JwksPadding { get; set; }

    /// <summary>The audience the Actions-style endpoint uses when the caller names none.</summary>
    public string DefaultAudience { get; set; } = "tokenbroker";

    public string IssuerUrl(string name) => BaseUrl + "/" + name;

    /// <summary>Starts the issuer on a free loopback port with the given issuer names.</summary>
    public static async Task<FakeCiIssuer> StartAsync(params string[] issuers)
    {
        var port = FreePort();
        var baseUrl = $"http://127.0.0.1:{port}";
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(baseUrl);
        var app = builder.Build();
        var fake = new FakeCiIssuer(app, baseUrl);
        for (var i = 0; i < issuers.Length; i++)
        {
            fake._issuers[issuers[i]] = new IssuerKeys(SharedKey(i));
        }

        app.MapGet("/{name}/.well-known/openid-configuration", (string name, HttpContext http) =>
        {
            Interlocked.Increment(ref fake._discoveryHits);
            fake._hitsByName.AddOrUpdate(name, 1, (_, n) => n + 1);
            if (fake.Down || !fake._issuers.ContainsKey(name))
            {
                return Results.StatusCode(fake.Down ? 503 : 404);
            }

            var issuer = fake.IssuerUrl(name);
            return Results.Json(new Dictionary<string, object>
            {
                ["issuer"] = issuer,
                ["jwks_uri"] = issuer + "/.well-known/jwks",
                ["response_types_supported"] = IdTokenOnly,
                ["subject_types_supported"] = PublicOnly,
                ["id_token_signing_alg_values_supported"] = Rs256Only,
            });
        });
        app.MapGet("/{name}/.well-known/jwks", (string name) =>
        {
            Interlocked.Increment(ref fake._jwksHits);
            fake._jwksHitsByName.AddOrUpdate(name, 1, (_, n) => n + 1);
            if (fake.Down || !fake._issuers.TryGetValue(name, out var keys))
            {
                return Results.StatusCode(fake.Down ? 503 : 404);
            }

            var jwks = keys.Jwks();
            if (fake.JwksPadding > 0)
            {
                jwks = jwks[..^1] + ",\"padding\":\"" + new string('p', fake.JwksPadding) + "\"}";
            }

            return Results.Text(jwks, "application/json");
        });
        app.MapGet("/{name}/_apis/token", (string name, HttpContext http, string? audience, string? fixture) =>
        {
            var presented = System.Text.Encoding.UTF8.GetBytes(http.Request.Headers.Authorization.ToString());
            var expected = System.Text.Encoding.UTF8.GetBytes("Bearer " + fake.RequestToken);
            if (!CryptographicOperations.FixedTimeEquals(presented, expected) || !fake._issuers.ContainsKey(name))
            {
                return Results.StatusCode(401);
            }

            var provider = name == "gitlab" ? "gitlab" : "github";
            var fixtureName = string.IsNullOrEmpty(fixture) ? (provider == "gitlab" ? "protected_main_staging" : "push_main_production") : fixture;
            if (!Fixtures.Exists(provider, fixtureName))
            {
                return Results.Json(new { error = $"no fixture '{fixtureName}' for {provider}" }, statusCode: 404);
            }

            var claims = Fixtures.Load(provider, fixtureName);
            return Results.Json(new { value = fake.Mint(name, claims, string.IsNullOrEmpty(audience) ? fake.DefaultAudience : audience) });
        });
        await app.StartAsync().ConfigureAwait(false);
        return fake;
    }

    /// <summary>Mints a job token: the fixture claims plus <c>iss</c>, <c>aud</c>, times and a fresh <c>jti</c>.</summary>
    public string Mint(string issuerName, IReadOnlyDictionary<string, JsonNode?> claims, string audience, Action<JsonObject>? tweak = null, TimeSpan? lifetime = null, DateTimeOffset? now = null)
    {
        var t = (now ?? Time.GetUtcNow()).ToUnixTimeSeconds();
        var payload = new JsonObject();
        foreach (var (k, v) in claims)
        {
            payload[k] = v?.DeepClone();
        }

        payload["iss"] = IssuerUrl(issuerName);
        payload["aud"] = audience;
        payload["iat"] = t;
        payload["nbf"] = t - 5;
        payload["exp"] = t + (long)(lifetime ?? TimeSpan.FromMinutes(5)).TotalSeconds;
        payload["jti"] = Guid.NewGuid().ToString();
        tweak?.Invoke(payload);
        return SignRaw(issuerName, new JsonObject { ["typ"] = "JWT", ["alg"] = "RS256", ["kid"] = _issuers[issuerName].Kid }, payload);
    }

    /// <summary>Signs an arbitrary header and payload with the issuer's RSA key (tests build attacks with it).</summary>
    public string SignRaw(string issuerName, JsonObject header, JsonObject payload)
    {
        var keys = _issuers[issuerName];
        var input = Base64Url.Encode(JsonSerializer.SerializeToUtf8Bytes(header)) + "." + Base64Url.Encode(JsonSerializer.SerializeToUtf8Bytes(payload));
        var signature = keys.Rsa.SignData(System.Text.Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        return input + "." + Base64Url.Encode(signature);
    }

    /// <summary>The issuer's RSA key (public part used by attack tests).</summary>
    public RSA Key(string issuerName) => _issuers[issuerName].Rsa;

    public string KeyId(string issuerName) => _issuers[issuerName].Kid;

    /// <summary>Replaces the issuer's key: the old kid disappears from the JWKS.</summary>
    public void RotateKey(string issuerName) => _issuers[issuerName] = new IssuerKeys(RSA.Create(2048));

    // RSA key generation costs up to a second on a small machine; fake issuers started by the same process share
    // one key per issuer position (each instance still has its own kids), and rotation generates a fresh key.
    private static readonly List<RSA> KeyPool = [];

    private static RSA SharedKey(int index)
    {
        lock (KeyPool)
        {
            while (KeyPool.Count <= index)
            {
                var rsa = RSA.Create(2048);
                _ = rsa.ExportParameters(false); // generate now, under the lock, not on first use
                KeyPool.Add(rsa);
            }

            return KeyPool[index];
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        foreach (var keys in _issuers.Values)
        {
            bool pooled;
            lock (KeyPool)
            {
                pooled = KeyPool.Contains(keys.Rsa);
            }

            if (!pooled)
            {
                keys.Rsa.Dispose();
            }
        }
    }

    /// <summary>A free TCP port on loopback (bound and released).</summary>
    public static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private sealed class IssuerKeys(RSA rsa)
    {
        public RSA Rsa { get; } = rsa;

        public string Kid { get; } = Base64Url.Encode(RandomNumberGenerator.GetBytes(8));

        public string Jwks()
        {
            var p = Rsa.ExportParameters(false);
            return JsonSerializer.Serialize(new
            {
                keys = new[]
                {
                    new { kty = "RSA", use = "sig", alg = "RS256", kid = Kid, n = Base64UrlEncoder.Encode(p.Modulus), e = Base64UrlEncoder.Encode(p.Exponent) },
                },
            });
        }
    }
}

/// <summary>The job-token claim fixtures shipped in samples/fixtures (built into the executable).</summary>
internal static class Fixtures
{
    public static bool Exists(string provider, string name)
    {
        using var stream = typeof(Fixtures).Assembly.GetManifestResourceStream($"TokenBroker.Fixtures.{provider}.json");
        return stream is not null && JsonNode.Parse(stream)?.AsObject()[name] is JsonObject;
    }

    public static IReadOnlyDictionary<string, JsonNode?> Load(string provider, string name)
    {
        var assembly = typeof(Fixtures).Assembly;
        using var stream = assembly.GetManifestResourceStream($"TokenBroker.Fixtures.{provider}.json")
            ?? throw new InvalidOperationException($"no fixture file for '{provider}'");
        var all = JsonNode.Parse(stream)!.AsObject();
        var fixture = all[name]?.AsObject() ?? throw new InvalidOperationException($"no fixture '{name}' for '{provider}'");
        return fixture.ToDictionary(kv => kv.Key, kv => kv.Value?.DeepClone());
    }
}
