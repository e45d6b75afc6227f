using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using TokenBroker.Exchange;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Adversarial;

/// <summary>
/// The catalogue of attacks on <c>POST /token</c>, one named case per attack, grouped by what they attack. Each
/// entry says which refusal (status, OAuth error, stable id) it must get and which provider calls it may cause.
/// <see cref="AdversarialSuiteTests"/> runs them; docs/adversarial-suite.md is generated from this table.
/// </summary>
internal static class AdversarialCatalogue
{
    public const string AlgorithmsAndKeys = "Algorithm and key tricks";
    public const string Malformed = "Malformed tokens";
    public const string ClaimValues = "Claim values";
    public const string FormAndMethod = "Form and method";
    public const string Escalation = "Escalation";

    /// <summary>The defence behind each error id, for the generated documentation.</summary>
    public static readonly IReadOnlyDictionary<string, string> Defences = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["TB1001"] = "POST only",
        ["TB1002"] = "form body only, UTF-8 only",
        ["TB1003"] = "no query string at all",
        ["TB1004"] = "`Limits:MaxRequestBodyBytes`, from `Content-Length` or while reading, before any parsing",
        ["TB1005"] = "single-valued parameters must appear once",
        ["TB1006"] = "exact, case-sensitive parameter names; required parameters",
        ["TB1007"] = "token-exchange grant only",
        ["TB1008"] = "`subject_token_type` allow-list",
        ["TB1009"] = "`requested_token_type` allow-list",
        ["TB1010"] = "no delegation (`actor_token`)",
        ["TB1011"] = "`requested_lifetime` must be a plain positive 32-bit integer",
        ["TB1012"] = "`Limits:MaxFormFields`, `MaxParameterLength`, `MaxAudiences`",
        ["TB1013"] = "strict form decoding (percent-encoding, ASCII, UTF-8)",
        ["TB1014"] = "audience/resource syntax",
        ["TB1015"] = "scope syntax",
        ["TB1016"] = "`access_token` subjects must be this broker's own `at+jwt`",
        ["TB1101"] = "`Limits:MaxTokenBytes`, before parsing",
        ["TB1102"] = "strict JWS reader: 3 non-empty canonical base64url segments, UTF-8 JSON objects, no duplicate members, string `kid`, `typ` JWT",
        ["TB1103"] = "JWE refused by shape and by `enc`",
        ["TB1104"] = "ordinal algorithm allow-list, asymmetric algorithms only (HS* and none cannot be configured)",
        ["TB1105"] = "headers that name a key (`jku`, `x5u`, `jwk`, `x5c`) are refused, never dereferenced",
        ["TB1106"] = "`crit` refused (no extension is understood)",
        ["TB1107"] = "exact ordinal issuer allow-list, checked before any network call",
        ["TB1108"] = "`kid` required",
        ["TB1109"] = "`kid` is an opaque ordinal key into the issuer's own JWKS; unknown-kid refresh at most once per `UnknownKeyRefreshInterval`",
        ["TB1110"] = "signature checked with the issuer's key for that kid, which must fit the algorithm (type, size, key `alg`)",
        ["TB1111"] = "single, exact (ordinal) audience",
        ["TB1112"] = "`exp` with bounded clock skew",
        ["TB1113"] = "`nbf` with bounded clock skew",
        ["TB1114"] = "`iat` with bounded clock skew",
        ["TB1115"] = "provider's `MaxTokenLifetime`, `exp` after `iat`",
        ["TB1116"] = "required claims: string `iss`, `exp`, `iat`, `jti` of 1 to 256 characters",
        ["TB1117"] = "time claims must be JSON numbers from 0 to year 9999",
        ["TB1119"] = "`Limits:MaxJsonDepth` (scan before parsing) and `Limits:MaxClaims`",
        ["TB1202"] = "the deciding rule must grant every requested audience (default deny)",
        ["TB1204"] = "every requested scope must be granted by the deciding rule",
    };

    public static IReadOnlyList<Attack> All { get; } = [.. AlgorithmAndKeyTricks(), .. MalformedTokens(), .. ClaimValueAttacks(), .. FormAndMethodAttacks(), .. EscalationAttacks()];

    private static Attack Token(string category, string name, Func<AttackKit, string> token, string errorId) =>
        new(category, name, k => AttackKit.Exchange(token(k)), errorId);

    private static JsonObject With(this JsonObject json, string name, JsonNode? value)
    {
        json[name] = value;
        return json;
    }

    private static IEnumerable<Attack> AlgorithmAndKeyTricks()
    {
        const string c = AlgorithmsAndKeys;

        // alg none, in any casing; with a signature so that the algorithm, not the empty segment, is what is refused.
        foreach (var none in new[] { "none", "None", "NONE", "nOnE" })
        {
            yield return Token(c, $"alg {none}", k => k.Header(none).ToJsonString() is var h ? JwtParts.B64(h) + "." + JwtParts.B64(k.Payload().ToJsonString()) + ".AAAA" : "", "TB1104");
        }

        yield return Token(c, "alg none with an empty signature", k => JwtParts.B64(k.Header("none").ToJsonString()) + "." + JwtParts.B64(k.Payload().ToJsonString()) + ".", "TB1102");
        yield return Token(c, "alg missing", k => k.Sign(new JsonObject { ["typ"] = "JWT", ["kid"] = k.GitHubKid }, k.Payload()), "TB1104");
        yield return Token(c, "alg as a number", k => k.Sign(k.Header().With("alg", 256), k.Payload()), "TB1104");
        yield return Token(c, "alg rs256 in lower case", k => k.Sign(k.Header("rs256"), k.Payload()), "TB1104");

        // RS256 -> HS256 key confusion: the provider's public key, in every form a verifier might hold it, as the HMAC secret.
        yield return Token(c, "HS256 with the RSA public key as PEM (SubjectPublicKeyInfo)", k => k.Hmac("HS256", Encoding.ASCII.GetBytes(k.GitHubKey.ExportSubjectPublicKeyInfoPem())), "TB1104");
        yield return Token(c, "HS256 with the RSA public key as PEM (PKCS#1)", k => k.Hmac("HS256", Encoding.ASCII.GetBytes(k.GitHubKey.ExportRSAPublicKeyPem())), "TB1104");
        yield return Token(c, "HS256 with the RSA public key as DER (SubjectPublicKeyInfo)", k => k.Hmac("HS256", k.GitHubKey.ExportSubjectPublicKeyInfo()), "TB1104");
        yield return Token(c, "HS256 with the RSA public key as DER (PKCS#1)", k => k.Hmac("HS256", k.GitHubKey.ExportRSAPublicKey()), "TB1104");
        yield return Token(c, "HS256 with the JWK as served by the provider", k => k.Hmac("HS256", Encoding.UTF8.GetBytes(k.ServedGitHubJwk)), "TB1104");
        yield return Token(c, "HS256 with the whole JWKS document as served", k => k.Hmac("HS256", Encoding.UTF8.GetBytes(k.ServedGitHubJwks)), "TB1104");
        yield return Token(c, "HS384 with the RSA public key as PEM", k => k.Hmac("HS384", Encoding.ASCII.GetBytes(k.GitHubKey.ExportSubjectPublicKeyInfoPem())), "TB1104");
        yield return Token(c, "HS512 with the RSA public key as DER", k => k.Hmac("HS512", k.GitHubKey.ExportSubjectPublicKeyInfo()), "TB1104");

        // Algorithms that are allowed, but not for this key.
        yield return Token(c, "ES256 header on the provider's RSA kid", k => k.Sign(k.Header("ES256"), k.Payload()), "TB1110") with
        {
            Defence = "the key for the kid must fit the header's algorithm: an RSA key never verifies ES256",
        };
        yield return Token(c, "PS256 header on a kid published for RS256", k => k.Sign(k.Header("PS256"), k.Payload()), "TB1110") with
        {
            Defence = "a JWK's own `alg` must equal the header's algorithm",
        };

        // Tokens that bring their own key, all signed by the attacker's key so that following the header would verify.
        yield return Token(c, "embedded jwk header with the attacker's key", k => k.Attacker.Sign(k.Header(kid: k.Attacker.KeyId).With("jwk", k.Attacker.PublicJwk()), k.Payload()), "TB1105");
        yield return Token(c, "embedded jwk header under the provider's kid", k => k.Attacker.Sign(k.Header().With("jwk", k.Attacker.PublicJwk()), k.Payload()), "TB1105");
        yield return Token(c, "jku pointing at a loopback trap server", k => k.Attacker.Sign(k.Header(kid: k.Attacker.KeyId).With("jku", k.Trap.Url + "/jwks.json"), k.Payload()), "TB1105") with { AimsAtTrap = true };
        yield return Token(c, "x5u pointing at a loopback trap server", k => k.Attacker.Sign(k.Header(kid: k.Attacker.KeyId).With("x5u", k.Trap.Url + "/cert.pem"), k.Payload()), "TB1105") with { AimsAtTrap = true };
        yield return Token(c, "jku naming the provider's own JWKS on a validly signed token", k => k.Sign(k.Header().With("jku", k.GitHubIssuer + "/.well-known/jwks"), k.Payload()), "TB1105");
        yield return Token(c, "x5c with the attacker's self-signed certificate", k => k.Attacker.Sign(k.Header(kid: k.Attacker.KeyId).With("x5c", new JsonArray(k.Attacker.CertificateBase64())), k.Payload()), "TB1105");
        yield return Token(c, "crit with an unknown extension", k => k.Sign(k.Header().With("crit", new JsonArray("exp-ext")).With("exp-ext", 1), k.Payload()), "TB1106");
        yield return Token(c, "crit with b64 (unencoded payload)", k => k.Sign(k.Header().With("crit", new JsonArray("b64")).With("b64", false), k.Payload()), "TB1106");

        // Key ids.
        yield return Token(c, "no kid", k => k.Sign(new JsonObject { ["typ"] = "JWT", ["alg"] = "RS256" }, k.Payload()), "TB1108");
        yield return Token(c, "empty kid", k => k.Sign(k.Header(kid: ""), k.Payload()), "TB1108");
        yield return Token(c, "kid as a number", k => k.Sign(k.Header().With("kid", 1), k.Payload()), "TB1102");
        foreach (var (name, kid) in HostileKids())
        {
            yield return Token(c, name, k => k.Sign(k.Header(kid: kid), k.Payload()), "TB1109") with { Upstream = Upstream.AtMostOneRefresh };
        }

        yield return Token(c, "kid of the provider in another case", k => k.Sign(k.Header(kid: Flip(k.GitHubKid)), k.Payload()), "TB1109") with { Upstream = Upstream.AtMostOneRefresh };
        yield return Token(c, "kid and key of the other trusted provider", k => k.Broker.Issuer.SignRaw("gitlab", k.Header(kid: k.Broker.Issuer.KeyId("gitlab")), k.Payload()), "TB1109") with
        {
            Upstream = Upstream.AtMostOneRefresh,
            Defence = "keys are looked up only in the JWKS of the provider that `iss` names",
        };
        yield return Token(c, "this provider's kid and key under the other provider's issuer", k => k.Sign(k.Header(), k.Payload(p => p["iss"] = k.Broker.Issuer.IssuerUrl("gitlab"))), "TB1109") with
        {
            Upstream = Upstream.AtMostOneRefresh,
            Defence = "keys are looked up only in the JWKS of the provider that `iss` names",
        };
        yield return Token(c, "key of the other trusted provider under this provider's kid", k => k.Broker.Issuer.SignRaw("gitlab", k.Header(), k.Payload()), "TB1110");
        yield return Token(c, "attacker's key under this provider's kid", k => k.Attacker.Sign(k.Header(), k.Payload()), "TB1110");
        yield return Token(c, "tampered payload with the original signature", k => k.Token().Split('.') is var p ? p[0] + "." + JwtParts.B64(JwtParts.Payload(k.Token(fixture: "lookalike_repository")).ToJsonString()) + "." + p[2] : "", "TB1110");
        yield return Token(c, "signature of another valid token", k => string.Join('.', k.Token().Split('.')[..2]) + "." + k.Token().Split('.')[2], "TB1110");
    }

    private static IEnumerable<(string Name, string Kid)> HostileKids()
    {
        yield return ("unknown kid", "not-a-published-kid");
        yield return ("kid path traversal", "../../../../etc/passwd");
        yield return ("kid path traversal, URL-encoded", "..%2F..%2F..%2Fetc%2Fpasswd");
        yield return ("kid as a file URL", "file:///etc/passwd");
        yield return ("kid as a URL", "http://127.0.0.1:1/jwks.json");
        yield return ("kid SQL tautology", "' OR 1=1 --");
        yield return ("kid SQL stacked query", "x'; DROP TABLE keys; --");
        yield return ("kid SQL union", "' UNION SELECT 'secret' --");
        yield return ("kid with a NUL byte", "kid\0evil");
        yield return ("kid with CR LF (log injection)", "kid\r\nINFO forged log line");
        yield return ("kid 8 KB", new string('k', 8192));
    }

    private static string Flip(string kid) =>
        kid.Any(char.IsLower) ? kid.ToUpperInvariant() : kid.ToLowerInvariant() is var lower && lower != kid ? lower : kid + "A";

    private static IEnumerable<Attack> MalformedTokens()
    {
        const string c = Malformed;
        yield return Token(c, "JWE compact (five segments)", _ => "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.AAAA.AAAA.AAAA.AAAA", "TB1103");
        yield return Token(c, "enc header in a three-segment token", k => k.Sign(k.Header().With("enc", "A256GCM"), k.Payload()), "TB1103");
        yield return Token(c, "two segments", k => string.Join('.', k.Token().Split('.')[..2]), "TB1102");
        yield return Token(c, "four segments", k => k.Token() + ".AAAA", "TB1102");
        yield return Token(c, "one segment", k => k.Token().Replace(".", "", StringComparison.Ordinal), "TB1102");
        yield return Token(c, "empty header segment", k => "." + string.Join('.', k.Token().Split('.')[1..]), "TB1102");
        yield return Token(c, "embedded whitespace", k => k.Token().Insert(10, " "), "TB1102");
        yield return Token(c, "trailing newline", k => k.Token() + "\n", "TB1102");
        yield return Token(c, "leading space", k => " " + k.Token(), "TB1102");
        yield return Token(c, "base64 padding", k => k.Token().Split('.') is var p ? p[0] + "==." + p[1] + "." + p[2] : "", "TB1102");
        yield return Token(c, "standard base64 alphabet", k => StandardAlphabet(k.Token()), "TB1102");
        yield return Token(c, "non-canonical base64url (unused bits set)", k => NonCanonical(k.Token()), "TB1102");
        yield return Token(c, "header is not an object", k => k.Token().Split('.') is var p ? JwtParts.B64("[1,2]") + "." + p[1] + "." + p[2] : "", "TB1102");
        yield return Token(c, "payload is not an object", k => AttackKit.Raw(k.Header().ToJsonString(), "\"hello\""), "TB1102");
        yield return Token(c, "payload is JSON null", k => AttackKit.Raw(k.Header().ToJsonString(), "null"), "TB1102");
        yield return Token(c, "header not UTF-8", k => AttackKit.Raw([.. "{\"alg\":\"RS256\",\"kid\":\""u8, 0xff, 0xfe, .. "\"}"u8], Encoding.UTF8.GetBytes(k.Payload().ToJsonString())), "TB1102");
        yield return Token(c, "payload not UTF-8", k => AttackKit.Raw(Encoding.UTF8.GetBytes(k.Header().ToJsonString()), [0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), "TB1102");
        yield return Token(c, "payload with a comment", k => k.SignBytes(k.Header().ToJsonString(), "/* hi */" + k.Payload().ToJsonString()), "TB1102");
        yield return Token(c, "payload with a trailing comma", k => k.SignBytes(k.Header().ToJsonString(), k.Payload().ToJsonString()[..^1] + ",}"), "TB1102");
        yield return Token(c, "duplicate repository_id members (validly signed)", k => k.SignBytes(k.Header().ToJsonString(), k.Payload().ToJsonString().Insert(1, "\"repository_id\":\"1\",")), "TB1102");
        yield return Token(c, "duplicate iss members (validly signed)", k => k.SignBytes(k.Header().ToJsonString(), k.Payload().ToJsonString().Insert(1, "\"iss\":\"https://evil.example\",")), "TB1102");
        yield return Token(c, "member name with an escaped lone surrogate (validly signed)", k => k.SignBytes(k.Header().ToJsonString(), k.Payload().ToJsonString().Insert(1, "\"\\ud800\":\"x\",")), "TB1102");
        yield return Token(c, "duplicate alg header members (none and RS256)", k => k.SignBytes("{\"typ\":\"JWT\",\"alg\":\"none\",\"alg\":\"RS256\",\"kid\":\"" + k.GitHubKid + "\"}", k.Payload().ToJsonString()), "TB1102");
        yield return Token(c, "5000-deep nesting in the payload", k => AttackKit.Raw(k.Header().ToJsonString(), new string('[', 5000) + new string(']', 5000)), "TB1119");
        yield return Token(c, "5000-deep nesting inside a claim", k => AttackKit.Raw(k.Header().ToJsonString(), k.Payload().ToJsonString()[..^1] + ",\"x\":" + new string('[', 5000) + new string(']', 5000) + "}"), "TB1119");
        yield return Token(c, "5000-deep nesting in the header", k => AttackKit.Raw("{\"alg\":\"RS256\",\"x\":" + new string('[', 5000) + new string(']', 5000) + "}", k.Payload().ToJsonString()), "TB1119");
        yield return Token(c, "claim flood (500 claims)", k => AttackKit.Raw(k.Header().ToJsonString(), "{" + string.Join(',', Enumerable.Range(0, 500).Select(i => $"\"c{i}\":1")) + "}"), "TB1119");
        yield return Token(c, "a broker access token (typ at+jwt) as a job token", k => k.BrokerAccessToken, "TB1102") with
        {
            Defence = "job tokens must have `typ` JWT; the broker's `at+jwt` tokens are never taken for job tokens",
        };
        yield return Token(c, "token over the token size limit", k => k.Token(p => p["pad"] = new string('a', 20_000)), "TB1101");
        yield return new(c, "1 MB token", k => WithExpectContinue(AttackKit.Exchange(new string('a', 1 << 20))), "TB1004") { Status = HttpStatusCode.RequestEntityTooLarge };
        yield return new(c, "1 MB body", k => WithExpectContinue(AttackKit.Body(HttpMethod.Post, "/token", AttackKit.FormText(k.Token()) + "&pad=" + new string('a', 1 << 20))), "TB1004") { Status = HttpStatusCode.RequestEntityTooLarge };
        yield return new(c, "chunked body over the limit (no Content-Length)", k => Chunked(AttackKit.FormText(k.Token()) + "&pad=" + new string('a', 100_000)), "TB1004") { Status = HttpStatusCode.RequestEntityTooLarge };
    }

    private static IEnumerable<Attack> ClaimValueAttacks()
    {
        const string c = ClaimValues;
        yield return Token(c, "exp as a string", k => k.Token(p => p["exp"] = "9999999999"), "TB1117");
        yield return Token(c, "exp 1e308", k => k.Token(p => p["exp"] = 1e308), "TB1117");
        yield return Token(c, "exp as a 21-digit integer", k => k.SignBytes(k.Header().ToJsonString(), k.Payload(p => p.Remove("exp")).ToJsonString()[..^1] + ",\"exp\":100000000000000000000}"), "TB1117");
        yield return Token(c, "exp negative", k => k.Token(p => p["exp"] = -1), "TB1117");
        yield return Token(c, "exp as an array", k => k.Token(p => p["exp"] = new JsonArray(9999999999)), "TB1117");
        yield return Token(c, "exp as a boolean", k => k.Token(p => p["exp"] = true), "TB1117");
        yield return Token(c, "exp as null", k => k.Token(p => p["exp"] = null), "TB1117");
        yield return Token(c, "exp as NaN", k => k.SignBytes(k.Header().ToJsonString(), k.Payload(p => p.Remove("exp")).ToJsonString()[..^1] + ",\"exp\":NaN}"), "TB1102");
        yield return Token(c, "iat as a string", k => k.Token(p => p["iat"] = p["iat"]!.ToJsonString()), "TB1117");
        yield return Token(c, "nbf as a string", k => k.Token(p => p["nbf"] = p["nbf"]!.ToJsonString()), "TB1117");
        yield return Token(c, "expired", k => k.Broker.GitHubToken(now: DateTimeOffset.UtcNow.AddHours(-1)), "TB1112");
        yield return Token(c, "not yet valid", k => k.Token(p => p["nbf"] = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeSeconds()), "TB1113");
        yield return Token(c, "issued in the future", k => k.Token(p => p["iat"] = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeSeconds()), "TB1114");
        yield return Token(c, "lifetime longer than the provider allows", k => k.Broker.GitHubToken(lifetime: TimeSpan.FromDays(2)), "TB1115");
        yield return Token(c, "exp not after iat", k => k.Token(p =>
        {
            // iat 20 s ahead (within the clock skew), exp equal to it: not expired, not in the future, but no lifetime.
            var t = p["iat"]!.GetValue<long>() + 20;
            p["iat"] = t;
            p["exp"] = t;
        }), "TB1115");
        yield return Token(c, "no exp", k => k.Token(p => p.Remove("exp")), "TB1116");
        yield return Token(c, "no iat", k => k.Token(p => p.Remove("iat")), "TB1116");
        yield return Token(c, "no jti", k => k.Token(p => p.Remove("jti")), "TB1116");
        yield return Token(c, "empty jti", k => k.Token(p => p["jti"] = ""), "TB1116");
        yield return Token(c, "jti of 257 characters", k => k.Token(p => p["jti"] = new string('j', 257)), "TB1116");
        yield return Token(c, "jti as a number", k => k.Token(p => p["jti"] = 42), "TB1116");
        yield return Token(c, "no iss", k => k.Token(p => p.Remove("iss")), "TB1116");
        yield return Token(c, "iss as an array", k => k.Token(p => p["iss"] = new JsonArray(k.GitHubIssuer)), "TB1116");

        // Issuer near-misses: all must miss the exact allow-list, and none may cause a network call.
        foreach (var (name, variant) in IssuerVariants())
        {
            yield return Token(c, name, k => k.Token(p => p["iss"] = variant(k.GitHubIssuer)), "TB1107");
        }

        yield return Token(c, "unknown issuer", k => k.Token(p => p["iss"] = "https://evil.example"), "TB1107");
        yield return Token(c, "unknown issuer on loopback", k => k.Token(p => p["iss"] = k.Trap.Url), "TB1107") with { AimsAtTrap = true };

        // Audience variants.
        yield return Token(c, "wrong audience", k => k.Token(p => p["aud"] = "https://someone-else"), "TB1111");
        yield return Token(c, "audience with trailing slash", k => k.Token(p => p["aud"] = k.Broker.Audience + "/"), "TB1111");
        yield return Token(c, "audience in upper case", k => k.Token(p => p["aud"] = k.Broker.Audience.ToUpperInvariant()), "TB1111");
        yield return Token(c, "audience with a trailing space", k => k.Token(p => p["aud"] = k.Broker.Audience + " "), "TB1111");
        yield return Token(c, "audience array with extras", k => k.Token(p => p["aud"] = new JsonArray(k.Broker.Audience, "https://other")), "TB1111");
        yield return Token(c, "audience array with extras first", k => k.Token(p => p["aud"] = new JsonArray("https://other", k.Broker.Audience)), "TB1111");
        yield return Token(c, "audience array with the audience twice", k => k.Token(p => p["aud"] = new JsonArray(k.Broker.Audience, k.Broker.Audience)), "TB1111");
        yield return Token(c, "empty audience array", k => k.Token(p => p["aud"] = new JsonArray()), "TB1111");
        yield return Token(c, "audience as a number", k => k.Token(p => p["aud"] = 1), "TB1111");
        yield return Token(c, "missing audience", k => k.Token(p => p.Remove("aud")), "TB1111");
    }

    private static IEnumerable<(string Name, Func<string, string> Variant)> IssuerVariants()
    {
        // The fake issuer is http://127.0.0.1:{port}/github.
        yield return ("issuer with trailing slash", i => i + "/");
        yield return ("issuer in upper case", i => i.ToUpperInvariant());
        yield return ("issuer path in another case", i => i.Replace("/github", "/GitHub", StringComparison.Ordinal));
        yield return ("issuer scheme in upper case", i => "HTTP" + i[4..]);
        yield return ("issuer with a trailing space", i => i + " ");
        yield return ("issuer with a leading space", i => " " + i);
        yield return ("issuer with another port", i => PortVariant(i, port => (port + 1).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        yield return ("issuer with a leading-zero port", i => PortVariant(i, port => "0" + port.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        yield return ("issuer without its port", i => PortVariant(i, _ => null));
        yield return ("issuer with https instead of http", i => "https" + i[4..]);
        yield return ("issuer with localhost for 127.0.0.1", i => i.Replace("127.0.0.1", "localhost", StringComparison.Ordinal));
        yield return ("issuer with a dot segment", i => i.Replace("/github", "/./github", StringComparison.Ordinal));
        yield return ("issuer with a percent-encoded path", i => i.Replace("/github", "/%67ithub", StringComparison.Ordinal));
        yield return ("issuer with a query", i => i + "?x=1");
        yield return ("issuer with a fragment", i => i + "#x");
        yield return ("issuer with userinfo", i => i.Replace("http://", "http://evil@", StringComparison.Ordinal));
        yield return ("issuer with a NUL suffix", i => i + "\0");
        yield return ("issuer with a Cyrillic homoglyph", i => i.Replace("/github", "/g\u0456thub", StringComparison.Ordinal));
    }

    private static string PortVariant(string issuer, Func<int, string?> port)
    {
        var uri = new Uri(issuer);
        var replaced = port(uri.Port);
        return $"{uri.Scheme}://{uri.Host}{(replaced is null ? "" : ":" + replaced)}{uri.AbsolutePath}";
    }

    private static IEnumerable<Attack> FormAndMethodAttacks()
    {
        const string c = FormAndMethod;
        var notAllowed = HttpStatusCode.MethodNotAllowed;
        var unsupported = HttpStatusCode.UnsupportedMediaType;
        yield return new(c, "GET", _ => AttackKit.Body(HttpMethod.Get, "/token", null), "TB1001") { Status = notAllowed };
        yield return new(c, "PUT with a valid form", k => AttackKit.Body(HttpMethod.Put, "/token", AttackKit.FormText(k.Token())), "TB1001") { Status = notAllowed };
        yield return new(c, "DELETE", _ => AttackKit.Body(HttpMethod.Delete, "/token", null), "TB1001") { Status = notAllowed };
        yield return new(c, "query-string parameters", k => AttackKit.Body(HttpMethod.Post, "/token?subject_token=x", AttackKit.FormText(k.Token())), "TB1003");
        yield return new(c, "all parameters in the query string", k => AttackKit.Body(HttpMethod.Post, "/token?" + AttackKit.FormText(k.Token()), ""), "TB1003");
        yield return new(c, "JSON body", k => AttackKit.Body(HttpMethod.Post, "/token", "{\"grant_type\":\"" + TokenTypes.TokenExchangeGrant + "\",\"subject_token\":\"" + k.Token() + "\"}", "application/json"), "TB1002") { Status = unsupported };
        yield return new(c, "JSON text with a form content type", k => AttackKit.Body(HttpMethod.Post, "/token", "{\"grant_type\":\"x\"}"), "TB1006");
        yield return new(c, "multipart body", k => AttackKit.Body(HttpMethod.Post, "/token", "--b\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b"), "TB1002") { Status = unsupported };
        yield return new(c, "text/plain body", k => AttackKit.Body(HttpMethod.Post, "/token", AttackKit.FormText(k.Token()), "text/plain"), "TB1002") { Status = unsupported };
        yield return new(c, "form in ISO-8859-1", k => AttackKit.Body(HttpMethod.Post, "/token", AttackKit.FormText(k.Token()), "application/x-www-form-urlencoded; charset=iso-8859-1"), "TB1002") { Status = unsupported };
        yield return new(c, "no content type", k => NoContentType(AttackKit.FormText(k.Token())), "TB1002") { Status = unsupported };

        foreach (var name in new[] { "grant_type", "subject_token_type", "scope", "requested_token_type", "requested_lifetime", "actor_token_type", "client_id" })
        {
            yield return new(c, $"repeated {name}", k => Repeated(k, name), "TB1005");
        }

        yield return new(c, "repeated subject_token with two different tokens", k => AttackKit.Form([.. BrokerHarness.ExchangeForm(k.Token(), AttackKit.DeployAudience), new("subject_token", k.Token(fixture: "lookalike_repository"))], null), "TB1005");
        yield return new(c, "parameter name in another case (Grant_Type)", k => Rename(k, "grant_type", "Grant_Type"), "TB1006");
        yield return new(c, "no grant_type", k => Drop(k, "grant_type"), "TB1006");
        yield return new(c, "no subject_token", k => Drop(k, "subject_token"), "TB1006");
        yield return new(c, "empty subject_token", k => AttackKit.Form([.. BrokerHarness.ExchangeForm("", AttackKit.DeployAudience)], null), "TB1006");
        yield return new(c, "no subject_token_type", k => Drop(k, "subject_token_type"), "TB1006");
        yield return new(c, "malformed percent-encoding", k => AttackKit.Body(HttpMethod.Post, "/token", AttackKit.FormText(k.Token()) + "&x=%zz"), "TB1013");
        yield return new(c, "percent-encoded invalid UTF-8", k => AttackKit.Body(HttpMethod.Post, "/token", AttackKit.FormText(k.Token()) + "&x=%ff%fe"), "TB1013");
        yield return new(c, "empty field name", k => AttackKit.Body(HttpMethod.Post, "/token", AttackKit.FormText(k.Token()) + "&=x"), "TB1013");
        yield return new(c, "too many form fields", k => AttackKit.Form([.. BrokerHarness.ExchangeForm(k.Token(), AttackKit.DeployAudience), .. Enumerable.Range(0, 40).Select(i => new KeyValuePair<string, string>($"x{i}", "1"))], null), "TB1012");
        yield return new(c, "parameter value over the length limit", k => AttackKit.ExchangeWith(k.Token(), ("x_note", new string('v', 3000))), "TB1012");
        yield return new(c, "parameter name over the length limit", k => AttackKit.ExchangeWith(k.Token(), (new string('n', 3000), "1")), "TB1012");
        yield return new(c, "eleven audiences", k => AttackKit.Exchange(k.Token(), [.. Enumerable.Range(0, 11).Select(i => $"https://a{i}.example")]), "TB1012");
        yield return new(c, "client_credentials grant", k => Replace(k, "grant_type", "client_credentials"), "TB1007") { Error = "unsupported_grant_type" };
        yield return new(c, "authorization_code grant", k => Replace(k, "grant_type", "authorization_code"), "TB1007") { Error = "unsupported_grant_type" };
        yield return new(c, "jwt-bearer grant", k => Replace(k, "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), "TB1007") { Error = "unsupported_grant_type" };
        yield return new(c, "SAML subject_token_type", k => Replace(k, "subject_token_type", "urn:ietf:params:oauth:token-type:saml2"), "TB1008");
        yield return new(c, "job token presented as an access_token", k => Replace(k, "subject_token_type", TokenTypes.AccessToken), "TB1016");
        yield return new(c, "requesting an id_token", k => AttackKit.ExchangeWith(k.Token(), ("requested_token_type", TokenTypes.IdToken)), "TB1009");
        yield return new(c, "actor_token (delegation)", k => AttackKit.ExchangeWith(k.Token(), ("actor_token", k.Token()), ("actor_token_type", TokenTypes.Jwt)), "TB1010");
        foreach (var lifetime in new[] { "0", "-5", "1e3", "+60", "4294967296", "ten" })
        {
            yield return new(c, $"requested_lifetime {lifetime}", k => AttackKit.ExchangeWith(k.Token(), ("requested_lifetime", lifetime)), "TB1011");
        }

        yield return new(c, "audience with a space", k => AttackKit.Exchange(k.Token(), "has space"), "TB1014") { Error = "invalid_target" };
        yield return new(c, "resource that is not a URI", k => AttackKit.ExchangeWith(k.Token(), ("resource", "not-a-uri")), "TB1014") { Error = "invalid_target" };
        yield return new(c, "resource with a fragment", k => AttackKit.ExchangeWith(k.Token(), ("resource", "https://x.example/#frag")), "TB1014") { Error = "invalid_target" };
        foreach (var (name, scope) in new[] { ("empty scope", ""), ("scope with a double space", "a  b"), ("scope with a quote", "quote\"") })
        {
            yield return new(c, name, k => AttackKit.ExchangeWith(k.Token(), ("scope", scope)), "TB1015") { Error = "invalid_scope" };
        }
    }

    private static IEnumerable<Attack> EscalationAttacks()
    {
        const string c = Escalation;
        yield return new(c, "scope escalation beyond the rule", k => AttackKit.ExchangeWith(k.Token(), ("scope", "deploy:payments admin")), "TB1204") { Error = "invalid_scope" };
        yield return new(c, "scope of another rule", k => AttackKit.ExchangeWith(k.Token(), ("scope", "artifacts:publish")), "TB1204") { Error = "invalid_scope" };
        yield return new(c, "audience no rule grants", k => AttackKit.Exchange(k.Token(), "https://not-granted.example"), "TB1202") { Error = "invalid_target" };
        yield return new(c, "a granted audience plus one more", k => AttackKit.Exchange(k.Token(), AttackKit.DeployAudience, "https://not-granted.example"), "TB1202") { Error = "invalid_target" };
        yield return new(c, "an ungranted resource next to a granted audience", k => AttackKit.ExchangeWith(k.Token(), ("resource", "https://not-granted.example/")), "TB1202") { Error = "invalid_target" };
        yield return new(c, "a granted audience with a trailing slash", k => AttackKit.Exchange(k.Token(), AttackKit.DeployAudience + "/"), "TB1202") { Error = "invalid_target" };
    }

    private static AttackRequest Repeated(AttackKit k, string name)
    {
        var token = k.Token();
        var form = BrokerHarness.ExchangeForm(token, AttackKit.DeployAudience);
        var value = form.FirstOrDefault(kv => kv.Key == name).Value ?? name switch
        {
            "scope" => "deploy:payments",
            "requested_lifetime" => "60",
            "actor_token_type" => TokenTypes.Jwt,
            "client_id" => "ci",
            _ => TokenTypes.AccessToken,
        };
        form.RemoveAll(kv => kv.Key == name);
        form.Add(new(name, value));
        form.Add(new(name, value));
        return AttackKit.Form(form, token);
    }

    private static AttackRequest Rename(AttackKit k, string from, string to)
    {
        var token = k.Token();
        return AttackKit.Form(BrokerHarness.ExchangeForm(token, AttackKit.DeployAudience).Select(kv => kv.Key == from ? new KeyValuePair<string, string>(to, kv.Value) : kv), token);
    }

    private static AttackRequest Drop(AttackKit k, string name)
    {
        var token = k.Token();
        return AttackKit.Form(BrokerHarness.ExchangeForm(token, AttackKit.DeployAudience).Where(kv => kv.Key != name), token);
    }

    private static AttackRequest Replace(AttackKit k, string name, string value)
    {
        var token = k.Token();
        return AttackKit.Form(BrokerHarness.ExchangeForm(token, AttackKit.DeployAudience).Select(kv => kv.Key == name ? new KeyValuePair<string, string>(name, value) : kv), token);
    }

    private static AttackRequest WithExpectContinue(AttackRequest request)
    {
        // The broker answers 413 from Content-Length without reading the body and closes the connection. Without
        // 'Expect: 100-continue' the client may still be writing the megabyte then and fail with a broken pipe
        // (a race in the test, not in the broker); with it, the client waits for the answer as a real client would.
        request.Message.Headers.ExpectContinue = true;
        return request;
    }

    private static AttackRequest Chunked(string body)
    {
        var message = new HttpRequestMessage(HttpMethod.Post, "/token") { Content = new StreamContent(new MemoryStream(Encoding.ASCII.GetBytes(body))) };
        message.Content.Headers.ContentType = new("application/x-www-form-urlencoded");
        message.Headers.TransferEncodingChunked = true;
        return new(message, null);
    }

    private static AttackRequest NoContentType(string body)
    {
        var message = new HttpRequestMessage(HttpMethod.Post, "/token") { Content = new ByteArrayContent(Encoding.ASCII.GetBytes(body)) };
        return new(message, null);
    }

    private static string StandardAlphabet(string token)
    {
        var converted = token.Replace('-', '+').Replace('_', '/');
        if (converted != token)
        {
            return converted;
        }

        var p = token.Split('.');
        return p[0] + "+." + p[1] + "." + p[2];
    }

    private static string NonCanonical(string token)
    {
        // Flip unused low bits of the last signature character: decodes to the same bytes, but is not canonical.
        var parts = token.Split('.');
        var sig = parts[2];
        Assert.That(sig.Length % 4, Is.Not.Zero, "an RS256 signature (256 bytes) has unused bits in its last character");
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        var last = alphabet.IndexOf(sig[^1], StringComparison.Ordinal);
        return parts[0] + "." + parts[1] + "." + sig[..^1] + alphabet[last ^ 1];
    }
}
