using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using TokenBroker.Exchange;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Adversarial;

/// <summary>Which calls to the CI provider (discovery, JWKS) an attack may cause.</summary>
internal enum Upstream
{
    /// <summary>None at all: the attack is refused from the request and the cached keys alone.</summary>
    None,

    /// <summary>At most one discovery and one JWKS fetch: an unknown <c>kid</c> may force one rate-limited refresh.</summary>
    AtMostOneRefresh,
}

/// <summary>The HTTP request an attack sends, and the subject token in it (to check that nothing echoes it).</summary>
internal sealed record AttackRequest(HttpRequestMessage Message, string? SubjectToken);

/// <summary>
/// One named attack of the catalogue and the refusal it must get. Status and OAuth error default to
/// 400 <c>invalid_request</c>; <see cref="Upstream"/> defaults to no provider call at all.
/// </summary>
internal sealed record Attack(string Category, string Name, Func<AttackKit, AttackRequest> Build, string ErrorId)
{
    public HttpStatusCode Status { get; init; } = HttpStatusCode.BadRequest;

    public string Error { get; init; } = "invalid_request";

    public Upstream Upstream { get; init; } = Upstream.None;

    /// <summary>The attack points the broker at the trap server; wait a little before asserting it stayed cold.</summary>
    public bool AimsAtTrap { get; init; }

    /// <summary>The defence that stops it, when the error id's default (<see cref="AdversarialCatalogue.Defences"/>) is not precise enough.</summary>
    public string? Defence { get; init; }

    public override string ToString() => Name;
}

/// <summary>What attacks are built from: the running broker and fake issuer, an attacker key and a trap server.</summary>
internal sealed class AttackKit(BrokerHarness broker, Attacker attacker, TrapServer trap, string servedGitHubJwk, string servedGitHubJwks, string brokerAccessToken)
{
    public const string DeployAudience = "https://deploy.internal/payments";

    public BrokerHarness Broker { get; } = broker;
    public Attacker Attacker { get; } = attacker;
    public TrapServer Trap { get; } = trap;

    /// <summary>The GitHub provider's key exactly as its JWKS serves it (one JWK object as JSON text).</summary>
    public string ServedGitHubJwk { get; } = servedGitHubJwk;

    /// <summary>The GitHub provider's whole JWKS document as served.</summary>
    public string ServedGitHubJwks { get; } = servedGitHubJwks;

    /// <summary>An access token this broker issued (an <c>at+jwt</c> signed by the broker's key).</summary>
    public string BrokerAccessToken { get; } = brokerAccessToken;

    public string GitHubIssuer => Broker.Issuer.IssuerUrl("github");

    public string GitHubKid => Broker.Issuer.KeyId("github");

    public RSA GitHubKey => Broker.Issuer.Key("github");

    /// <summary>A valid GitHub job token for a production deploy of payments (optionally tweaked and re-signed).</summary>
    public string Token(Action<JsonObject>? tweak = null, string fixture = "push_main_production") => Broker.GitHubToken(fixture, tweak);

    public JsonObject Header(string alg = "RS256", string? kid = null) => new() { ["typ"] = "JWT", ["alg"] = alg, ["kid"] = kid ?? GitHubKid };

    public JsonObject Payload(Action<JsonObject>? tweak = null) => JwtParts.Payload(Token(tweak));

    /// <summary>Signs with the trusted GitHub provider's own key.</summary>
    public string Sign(JsonObject header, JsonObject payload) => Broker.Issuer.SignRaw("github", header, payload);

    /// <summary>A token with the given raw header and payload JSON and a 256-byte zero signature.</summary>
    public static string Raw(string headerJson, string payloadJson) => Raw(Encoding.UTF8.GetBytes(headerJson), Encoding.UTF8.GetBytes(payloadJson));

    public static string Raw(byte[] header, byte[] payload) => JwtParts.B64(header) + "." + JwtParts.B64(payload) + "." + JwtParts.B64(new byte[256]);

    /// <summary>Signs the raw header and payload bytes with the GitHub key, as RS256 over exactly those bytes.</summary>
    public string SignBytes(string headerJson, string payloadJson)
    {
        var input = JwtParts.B64(headerJson) + "." + JwtParts.B64(payloadJson);
        return input + "." + JwtParts.B64(GitHubKey.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1));
    }

    /// <summary>An HMAC-signed token with <paramref name="secret"/> as the key (the RS256/HS256 confusion attack).</summary>
    public string Hmac(string alg, byte[] secret, Action<JsonObject>? tweak = null)
    {
        var input = JwtParts.B64(Header(alg).ToJsonString()) + "." + JwtParts.B64(Payload(tweak).ToJsonString());
        var data = Encoding.ASCII.GetBytes(input);
        var mac = alg switch
        {
            "HS256" => HMACSHA256.HashData(secret, data),
            "HS384" => HMACSHA384.HashData(secret, data),
            _ => HMACSHA512.HashData(secret, data),
        };
        return input + "." + JwtParts.B64(mac);
    }

    /// <summary>The standard exchange form for <paramref name="token"/>, asking for the deploy audience.</summary>
    public static AttackRequest Exchange(string token, params string[] audiences) =>
        Form(BrokerHarness.ExchangeForm(token, audiences.Length == 0 ? [DeployAudience] : audiences), token);

    /// <summary>The standard exchange form with extra fields appended.</summary>
    public static AttackRequest ExchangeWith(string token, params (string Name, string Value)[] extra)
    {
        var form = BrokerHarness.ExchangeForm(token, DeployAudience);
        form.AddRange(extra.Select(e => new KeyValuePair<string, string>(e.Name, e.Value)));
        return Form(form, token);
    }

    public static AttackRequest Form(IEnumerable<KeyValuePair<string, string>> form, string? token) =>
        new(new HttpRequestMessage(HttpMethod.Post, "/token") { Content = new FormUrlEncodedContent(form) }, token);

    /// <summary>A request with a literal body, for what a form encoder would never produce.</summary>
    public static AttackRequest Body(HttpMethod method, string path, string? body, string contentType = "application/x-www-form-urlencoded", string? token = null)
    {
        var message = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            message.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
            message.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        }

        return new(message, token);
    }

    /// <summary>A valid form body (already encoded) around <paramref name="token"/>.</summary>
    public static string FormText(string token) =>
        $"grant_type={Uri.EscapeDataString(TokenTypes.TokenExchangeGrant)}&subject_token={Uri.EscapeDataString(token)}&subject_token_type={Uri.EscapeDataString(TokenTypes.IdToken)}&audience={Uri.EscapeDataString(DeployAudience)}";
}
