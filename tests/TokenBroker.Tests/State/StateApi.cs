using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using TokenBroker.Security;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.State;

/// <summary>Credentials made at test time (never committed) and helpers for /introspect, /revoke and /admin.</summary>
internal sealed class StateApi
{
    private StateApi((string Secret, string Line) admin, (string Secret, string Line) introspection)
    {
        AdminSecret = admin.Secret;
        AdminLine = admin.Line;
        IntrospectionSecret = introspection.Secret;
        IntrospectionLine = introspection.Line;
    }

    public string AdminSecret { get; }
    public string AdminLine { get; }
    public string IntrospectionSecret { get; }
    public string IntrospectionLine { get; }

    public static StateApi Create() => new(CredentialHash.Create("ops-admin"), CredentialHash.Create("payments-api"));

    /// <summary>Settings that configure both credential scopes and one shared ES256 key file (replicas must share keys).</summary>
    public Dictionary<string, string?> Settings(string? keyFile = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["TokenBroker:Admin:Credentials:0"] = AdminLine,
            ["TokenBroker:Introspection:Credentials:0"] = IntrospectionLine,
        };
        if (keyFile is not null)
        {
            settings["TokenBroker:Signing:Keys:0:Path"] = keyFile;
        }

        return settings;
    }

    public static string WriteKeyFile()
    {
        var path = Path.Combine(Path.GetTempPath(), $"tokenbroker-test-{Guid.NewGuid():N}.pem");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        File.WriteAllText(path, key.ExportPkcs8PrivateKeyPem());
        return path;
    }

    public static AuthenticationHeaderValue Basic(string name, string secret) => new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{name}:{secret}")));

    public AuthenticationHeaderValue IntrospectionAuth => Basic("payments-api", IntrospectionSecret);

    public AuthenticationHeaderValue AdminAuth => new("Bearer", AdminSecret);

    public static async Task<ExchangeResponse> IntrospectAsync(BrokerHarness broker, string token, AuthenticationHeaderValue? auth)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/introspect")
        {
            Content = new FormUrlEncodedContent([new("token", token), new("token_type_hint", "access_token")]),
        };
        request.Headers.Authorization = auth;
        return await broker.SendAsync(request);
    }

    public Task<ExchangeResponse> IntrospectAsync(BrokerHarness broker, string token) => IntrospectAsync(broker, token, IntrospectionAuth);

    public static async Task<ExchangeResponse> RevokeAsync(BrokerHarness broker, string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/revoke") { Content = new FormUrlEncodedContent([new("token", token)]) };
        return await broker.SendAsync(request);
    }

    public async Task<ExchangeResponse> AdminAsync(BrokerHarness broker, HttpMethod method, string path, string? json = null, AuthenticationHeaderValue? auth = null, bool authenticate = true)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }

        request.Headers.Authorization = auth ?? (authenticate ? AdminAuth : null);
        return await broker.SendAsync(request);
    }
}
