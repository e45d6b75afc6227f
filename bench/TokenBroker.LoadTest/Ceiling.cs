using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Demo;
using TokenBroker.Exchange;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Signing;
using TokenBroker.Tokens;

/// <summary>What the ceiling's loop verifies and signs: a job token with its issuer's key, and the claims of a token to issue.</summary>
internal sealed record CeilingSample(string JobToken, JsonWebKey Key, MintRequest Issued)
{
    /// <summary>The issued token's header and payload segments (base64url), when the sample came from a real exchange.</summary>
    public (string Header, string Payload)? IssuedSegments { get; init; }
}

/// <summary>The rounds of one ceiling measurement; the ceiling is their median (the rate moves between rounds on a shared VM).</summary>
internal sealed record CeilingRounds(double[] Rounds)
{
    public double Median => Stats.Median(Rounds);

    public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{Median:F0} /s (median of rounds {string.Join(" / ", Rounds.Select(r => r.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)))})");
}

/// <summary>
/// The cryptographic floor of one exchange, in a tight loop on every core: read + verify the RS256 job token, mint +
/// sign the ES256 token. With <see cref="SampleAsync"/> the loop works on this run's own job token and on the claims of
/// the token the broker issued for it, so both sides of the ratio do the same cryptography on the same bytes.
/// </summary>
internal static class Ceiling
{
    /// <summary>Rates (exchanges/s) of <paramref name="count"/> rounds of <paramref name="round"/> each, after one discarded warm-up round.</summary>
    public static CeilingRounds Measure(CeilingSample sample, TimeSpan warmUp, TimeSpan round, int count)
    {
        MeasureOnce(sample, warmUp);
        return new CeilingRounds(Enumerable.Range(0, count).Select(_ => MeasureOnce(sample, round)).ToArray());
    }

    /// <summary>
    /// Exchanges <paramref name="jobToken"/> (a token of this run, not used again) at the broker and returns it with the
    /// github key and the claims of the issued token, read back from the response.
    /// </summary>
    public static async Task<CeilingSample> SampleAsync(HttpClient client, FakeCiIssuer issuer, string jobToken, string audience)
    {
        using var content = new FormUrlEncodedContent(
        [
            new("grant_type", TokenTypes.TokenExchangeGrant),
            new("subject_token", jobToken),
            new("subject_token_type", TokenTypes.IdToken),
            new("audience", audience),
        ]);
        using var response = await client.PostAsync(new Uri("/token", UriKind.Relative), content);
        var body = await response.Content.ReadAsStringAsync();
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new InvalidOperationException($"the ceiling's sample exchange was refused: {body}");
        }

        var issued = JsonNode.Parse(body)!["access_token"]!.GetValue<string>().Split('.');
        return new CeilingSample(jobToken, PublicJwk(issuer.Key("github"), issuer.KeyId("github")), FromSegments(issued[0], issued[1]))
        {
            IssuedSegments = (issued[0], issued[1]),
        };
    }

    /// <summary>A mint request that writes the same claims as the token whose header and payload segments these are.</summary>
    public static MintRequest FromSegments(string header, string payload) =>
        FromPayload(JsonNode.Parse(Base64UrlEncoder.DecodeBytes(payload))!.AsObject(), JsonNode.Parse(Base64UrlEncoder.DecodeBytes(header))!["typ"]!.GetValue<string>());

    /// <summary>The ceiling of the first five sessions: a 6-claim job token and a token to issue without context claims.</summary>
    public static CeilingSample Toy()
    {
        using var rsa = System.Security.Cryptography.RSA.Create(2048);
        var payload = new JsonObject { ["iss"] = "i", ["aud"] = "a", ["exp"] = 1, ["iat"] = 1, ["jti"] = "j", ["repository_id"] = "900101" };
        var input = Base64Url.Encode(Encoding.UTF8.GetBytes("{\"alg\":\"RS256\",\"kid\":\"k\",\"typ\":\"JWT\"}")) + "." + Base64Url.Encode(Encoding.UTF8.GetBytes(payload.ToJsonString()));
        var token = input + "." + Base64Url.Encode(rsa.SignData(Encoding.ASCII.GetBytes(input), System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1));
        var mint = new MintRequest
        {
            Issuer = "https://broker", Subject = "s", Audiences = ["a"], IssuedAt = DateTimeOffset.UnixEpoch, ExpiresAt = DateTimeOffset.UnixEpoch.AddMinutes(10),
            Jti = "j", ClientId = "c", Scopes = [], Type = "at+jwt", Context = [], Extra = [],
        };
        return new CeilingSample(token, PublicJwk(rsa, "k"), mint);
    }

    public static JsonWebKey PublicJwk(string n, string e, string kid) => new() { Kty = "RSA", N = n, E = e, Kid = kid, Alg = "RS256" };

    private static JsonWebKey PublicJwk(System.Security.Cryptography.RSA rsa, string kid)
    {
        var p = rsa.ExportParameters(false);
        return new JsonWebKey { Kty = "RSA", N = Base64UrlEncoder.Encode(p.Modulus), E = Base64UrlEncoder.Encode(p.Exponent), Kid = kid, Alg = "RS256" };
    }

    /// <summary>A mint request that writes the same claims as <paramref name="payload"/> (registered claims, then the rest in order).</summary>
    private static MintRequest FromPayload(JsonObject payload, string type)
    {
        string Text(string name) => payload[name]!.GetValue<string>();
        DateTimeOffset Time(string name) => DateTimeOffset.FromUnixTimeSeconds(payload[name]!.GetValue<long>());
        var registered = new HashSet<string>(StringComparer.Ordinal) { "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope" };
        var context = new List<KeyValuePair<string, string>>();
        var extra = new List<KeyValuePair<string, ClaimValue>>();
        foreach (var (name, value) in payload)
        {
            if (registered.Contains(name))
            {
                continue;
            }

            if (value is JsonValue v && v.GetValueKind() == JsonValueKind.String)
            {
                context.Add(new(name, v.GetValue<string>()));
            }
            else
            {
                extra.Add(new(name, Claim(value)));
            }
        }

        return new MintRequest
        {
            Issuer = Text("iss"),
            Subject = Text("sub"),
            Audiences = payload["aud"] is JsonArray audiences ? audiences.Select(a => a!.GetValue<string>()).ToArray() : [Text("aud")],
            IssuedAt = Time("iat"),
            ExpiresAt = Time("exp"),
            Jti = Text("jti"),
            ClientId = Text("client_id"),
            Scopes = payload["scope"] is null ? [] : Text("scope").Split(' '),
            Type = type,
            Context = context,
            Extra = extra,
        };
    }

    private static ClaimValue Claim(JsonNode? node) => node switch
    {
        JsonArray list => new ClaimValue.List(list.Select(Claim).ToArray()),
        JsonObject map => new ClaimValue.Map(map.Select(kv => new KeyValuePair<string, ClaimValue>(kv.Key, Claim(kv.Value))).ToArray()),
        _ => new ClaimValue.Text(node?.ToJsonString() ?? "null"),
    };

    private static double MeasureOnce(CeilingSample sample, TimeSpan duration)
    {
        using var signer = LocalKeySigner.Generate("ES256");
        var algorithms = new HashSet<string> { "RS256" };
        long total = 0;
        var stop = Stopwatch.StartNew();
        Parallel.For(0, Environment.ProcessorCount, _ =>
        {
            long n = 0;
            while (stop.Elapsed < duration)
            {
                using var jwt = JwtReader.Read(sample.JobToken, algorithms, new JwtReadLimits(16384, 100, 8)).Token
                    ?? throw new InvalidOperationException("the ceiling's job token does not read");
                if (!jwt.VerifySignature(sample.Key))
                {
                    throw new InvalidOperationException("the ceiling's job token does not verify");
                }

                TokenMinter.Mint(sample.Issued, signer);
                n++;
            }

            Interlocked.Add(ref total, n);
        });
        return total / stop.Elapsed.TotalSeconds;
    }
}
