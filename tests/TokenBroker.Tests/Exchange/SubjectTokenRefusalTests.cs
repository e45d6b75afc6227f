using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using TokenBroker.Demo;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Exchange;

/// <summary>
/// Every refusal class of subject-token validation: status, OAuth error, stable id, no token issued, the audit
/// event carries the same id and request id, and the description never echoes token content.
/// </summary>
[TestFixture]
public sealed class SubjectTokenRefusalTests
{
    private static BrokerHarness _broker = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _broker = await BrokerHarness.StartAsync();

    [OneTimeTearDown]
    public async Task StopAsync() => await _broker.DisposeAsync();

    /// <summary>A named attack: builds a subject token against the running harness.</summary>
    internal sealed record Attack(string Name, Func<BrokerHarness, string> Token, string ErrorId, HttpStatusCode Status = HttpStatusCode.BadRequest, string Error = "invalid_request")
    {
        public override string ToString() => Name;
    }

    private static JsonObject Header(BrokerHarness b, string alg = "RS256") =>
        new() { ["typ"] = "JWT", ["alg"] = alg, ["kid"] = b.Issuer.KeyId("github") };

    private static JsonObject Payload(BrokerHarness b, Action<JsonObject>? tweak = null)
    {
        var token = b.GitHubToken(tweak: tweak);
        return JwtParts.Payload(token);
    }

    private static string Sign(BrokerHarness b, JsonObject header, JsonObject payload) => b.Issuer.SignRaw("github", header, payload);

    private static string Unsigned(JsonObject header, JsonObject payload, string signature = "") =>
        JwtParts.B64(header.ToJsonString()) + "." + JwtParts.B64(payload.ToJsonString()) + "." + signature;

    private static string Hs256(string key, JsonObject header, JsonObject payload)
    {
        var input = JwtParts.B64(header.ToJsonString()) + "." + JwtParts.B64(payload.ToJsonString());
        var mac = HMACSHA256.HashData(Encoding.UTF8.GetBytes(key), Encoding.ASCII.GetBytes(input));
        return input + "." + JwtParts.B64(mac);
    }

    private static string RawPayload(BrokerHarness b, string payloadJson) =>
        JwtParts.B64(Header(b).ToJsonString()) + "." + JwtParts.B64(payloadJson) + "." + JwtParts.B64(new byte[256]);

    private static readonly Dictionary<string, Attack> ByName = AllAttacks().ToDictionary(a => a.Name);

    public static IEnumerable<string> Attacks() => ByName.Keys;

    private static IEnumerable<Attack> AllAttacks()
    {
        // Shape and encoding.
        yield return new("two segments", b => string.Join('.', b.GitHubToken().Split('.')[..2]), "TB1102");
        yield return new("four segments", b => b.GitHubToken() + ".AAAA", "TB1102");
        yield return new("JWE compact (five segments)", b => "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.AAAA.AAAA.AAAA.AAAA", "TB1103");
        yield return new("empty signature (unsigned)", b => string.Join('.', b.GitHubToken().Split('.')[..2]) + ".", "TB1102");
        yield return new("base64 padding", b => b.GitHubToken().Split('.') is var p ? p[0] + "==." + p[1] + "." + p[2] : "", "TB1102");
        yield return new("standard base64 alphabet", b => b.GitHubToken().Replace('-', '+').Replace('_', '/') is var t && t.Contains('+', StringComparison.Ordinal) || t.Contains('/', StringComparison.Ordinal) ? t : t.Split('.')[0] + "+." + t.Split('.')[1] + "." + t.Split('.')[2], "TB1102");
        yield return new("embedded whitespace", b => b.GitHubToken().Insert(10, " "), "TB1102");
        yield return new("non-canonical base64url", b => NonCanonical(b.GitHubToken()), "TB1102");
        yield return new("header is not an object", b => JwtParts.B64("[1,2]") + "." + b.GitHubToken().Split('.')[1] + "." + b.GitHubToken().Split('.')[2], "TB1102");
        yield return new("payload is not an object", b => RawPayload(b, "\"hello\""), "TB1102");
        yield return new("payload not UTF-8", b => JwtParts.B64(Header(b).ToJsonString()) + "." + JwtParts.B64(new byte[] { 0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d }) + "." + JwtParts.B64(new byte[256]), "TB1102");
        yield return new("duplicate repository_id members", b => Sign(b, Header(b), Payload(b)).Split('.') is var p
            ? DuplicateMember(b, p[1])
            : "", "TB1102");
        yield return new("5000-deep nesting", b => RawPayload(b, new string('[', 5000) + new string(']', 5000)), "TB1119");
        yield return new("token over the size limit", b => b.GitHubToken(tweak: p => p["pad"] = new string('a', 20_000)), "TB1101");

        // Algorithms and keys.
        yield return new("alg none", b => Unsigned(Header(b, "none"), Payload(b), "AAAA"), "TB1104");
        yield return new("alg NoNe", b => Unsigned(Header(b, "NoNe"), Payload(b), "AAAA"), "TB1104");
        yield return new("HS256 with the RSA public key as PEM", b => Hs256(b.Issuer.Key("github").ExportSubjectPublicKeyInfoPem(), Header(b, "HS256"), Payload(b)), "TB1104");
        yield return new("jwk header", b => Sign(b, WithHeader(Header(b), "jwk", new JsonObject { ["kty"] = "RSA" }), Payload(b)), "TB1105");
        yield return new("jku header", b => Sign(b, WithHeader(Header(b), "jku", "http://127.0.0.1:1/jwks"), Payload(b)), "TB1105");
        yield return new("x5u header", b => Sign(b, WithHeader(Header(b), "x5u", "http://127.0.0.1:1/cert"), Payload(b)), "TB1105");
        yield return new("x5c header", b => Sign(b, WithHeader(Header(b), "x5c", new JsonArray("MIIB")), Payload(b)), "TB1105");
        yield return new("crit with unknown extension", b => Sign(b, WithHeader(WithHeader(Header(b), "crit", new JsonArray("exp-ext")), "exp-ext", 1), Payload(b)), "TB1106");
        yield return new("typ at+jwt", b => Sign(b, WithHeader(Header(b), "typ", "at+jwt"), Payload(b)), "TB1102");
        yield return new("no kid", b => Sign(b, new JsonObject { ["alg"] = "RS256" }, Payload(b)), "TB1108");
        yield return new("unknown kid", b => Sign(b, WithHeader(Header(b), "kid", "not-a-published-kid"), Payload(b)), "TB1109");
        yield return new("kid path traversal", b => Sign(b, WithHeader(Header(b), "kid", "../../../../etc/passwd"), Payload(b)), "TB1109");
        yield return new("kid 8 KB", b => Sign(b, WithHeader(Header(b), "kid", new string('k', 8192)), Payload(b)), "TB1109");
        yield return new("signature by the other provider's key", b => b.Issuer.SignRaw("gitlab", Header(b), Payload(b)), "TB1110");
        yield return new("tampered payload", b => b.GitHubToken().Split('.') is var p ? p[0] + "." + JwtParts.B64(JwtParts.Payload(b.GitHubToken(fixture: "lookalike_repository")).ToJsonString()) + "." + p[2] : "", "TB1110");

        // Issuer and audience.
        yield return new("unknown issuer", b => b.GitHubToken(tweak: p => p["iss"] = "https://evil.example"), "TB1107");
        yield return new("issuer with trailing slash", b => b.GitHubToken(tweak: p => p["iss"] = b.Issuer.IssuerUrl("github") + "/"), "TB1107");
        yield return new("issuer in upper case", b => b.GitHubToken(tweak: p => p["iss"] = b.Issuer.IssuerUrl("github").ToUpperInvariant()), "TB1107");
        yield return new("issuer with space", b => b.GitHubToken(tweak: p => p["iss"] = b.Issuer.IssuerUrl("github") + " "), "TB1107");
        yield return new("wrong audience", b => b.GitHubToken(tweak: p => p["aud"] = "https://someone-else"), "TB1111");
        yield return new("audience with trailing slash", b => b.GitHubToken(tweak: p => p["aud"] = b.Audience + "/"), "TB1111");
        yield return new("multi-valued audience", b => b.GitHubToken(tweak: p => p["aud"] = new JsonArray(b.Audience, "https://other")), "TB1111");
        yield return new("missing audience", b => b.GitHubToken(tweak: p => p.Remove("aud")), "TB1111");

        // Times and required claims.
        yield return new("expired", b => b.GitHubToken(now: DateTimeOffset.UtcNow.AddHours(-1)), "TB1112");
        yield return new("not yet valid", b => b.GitHubToken(tweak: p => p["nbf"] = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeSeconds()), "TB1113");
        yield return new("issued in the future", b => b.GitHubToken(tweak: p => p["iat"] = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeSeconds()), "TB1114");
        yield return new("lifetime too long", b => b.GitHubToken(lifetime: TimeSpan.FromDays(2)), "TB1115");
        yield return new("exp as a string", b => b.GitHubToken(tweak: p => p["exp"] = "9999999999"), "TB1117");
        yield return new("exp 1e308", b => RawPayload(b, "{\"iss\":\"" + b.Issuer.IssuerUrl("github") + "\",\"aud\":\"" + b.Audience + "\",\"exp\":1e308,\"iat\":1,\"jti\":\"x\"}"), "TB1117");
        yield return new("exp negative", b => b.GitHubToken(tweak: p => p["exp"] = -1), "TB1117");
        yield return new("no exp", b => b.GitHubToken(tweak: p => p.Remove("exp")), "TB1116");
        yield return new("no iat", b => b.GitHubToken(tweak: p => p.Remove("iat")), "TB1116");
        yield return new("no jti", b => b.GitHubToken(tweak: p => p.Remove("jti")), "TB1116");
        yield return new("no iss", b => b.GitHubToken(tweak: p => p.Remove("iss")), "TB1116");
    }

    private static JsonObject WithHeader(JsonObject header, string name, JsonNode? value)
    {
        header[name] = value;
        return header;
    }

    private static string NonCanonical(string token)
    {
        // Flip unused low bits of the last signature character: decodes to the same bytes, but is not canonical.
        var parts = token.Split('.');
        var sig = parts[2];
        if (sig.Length % 4 == 0)
        {
            return token + "!"; // cannot happen for RS256 (342 chars); keeps the case honest if it ever does
        }

        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        var last = alphabet.IndexOf(sig[^1], StringComparison.Ordinal);
        var flipped = alphabet[last ^ 1];
        return parts[0] + "." + parts[1] + "." + sig[..^1] + flipped;
    }

    private static string DuplicateMember(BrokerHarness b, string payloadSegment)
    {
        var json = Encoding.UTF8.GetString(System.Buffers.Text.Base64Url.DecodeFromChars(payloadSegment));
        var duplicated = json.Insert(1, "\"repository_id\":\"1\",");
        var header = Header(b);
        var input = JwtParts.B64(header.ToJsonString()) + "." + JwtParts.B64(duplicated);
        var sig = b.Issuer.Key("github").SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        return input + "." + JwtParts.B64(sig);
    }

    [TestCaseSource(nameof(Attacks))]
    public async Task Exchange_WithAttack_IsRefusedWithStableIdAndNoToken(string name)
    {
        var attack = ByName[name];
        var token = attack.Token(_broker);

        var response = await _broker.ExchangeAsync(token, "https://deploy.internal/payments");

        Assert.That(response.Status, Is.EqualTo(attack.Status), response.Raw);
        Assert.That(response.Error, Is.EqualTo(attack.Error));
        Assert.That(response.ErrorId, Is.EqualTo(attack.ErrorId), response.Raw);
        Assert.That(response.AccessToken, Is.Null);
        Assert.That(response.Headers.CacheControl!.NoStore, Is.True);
        Assert.That(response.Body["error_description"]!.GetValue<string>(), Does.Contain(attack.ErrorId).And.Contain(response.RequestId!));
        if (token.Length > 20)
        {
            Assert.That(response.Raw, Does.Not.Contain(token[^20..]), "the description must not echo token content");
        }

        var audit = _broker.AuditFor(response);
        Assert.That(audit, Is.Not.Null, "every refusal is audited");
        Assert.That(audit!.Outcome, Is.EqualTo("refused"));
        Assert.That(audit.ErrorId, Is.EqualTo(attack.ErrorId));
        Assert.That(audit.IssuedJti, Is.Null);
        Assert.That(audit.Detail, Is.Not.Empty);
    }

    [Test]
    public async Task Exchange_WithUnknownIssuer_MakesNoNetworkCall()
    {
        var discovery = _broker.Issuer.DiscoveryHits;
        var jwks = _broker.Issuer.JwksHits;

        var response = await _broker.ExchangeAsync(_broker.GitHubToken(tweak: p => p["iss"] = "http://127.0.0.1:1/evil"), "https://deploy.internal/payments");

        Assert.That(response.ErrorId, Is.EqualTo("TB1107"));
        Assert.That(_broker.Issuer.DiscoveryHits, Is.EqualTo(discovery));
        Assert.That(_broker.Issuer.JwksHits, Is.EqualTo(jwks));
    }
}
