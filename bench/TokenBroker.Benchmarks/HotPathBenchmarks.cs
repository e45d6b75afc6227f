using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BenchmarkDotNet.Attributes;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Audit;
using TokenBroker.Configuration;
using TokenBroker.Demo;
using TokenBroker.Exchange;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Model;
using TokenBroker.Rules.Providers;
using TokenBroker.Signing;
using TokenBroker.Tokens;

namespace TokenBroker.Benchmarks;

/// <summary>
/// The stages of one exchange, measured alone with their allocations. Budgets (bytes allocated per operation)
/// are in docs/performance.md; the numbers there come from this class.
/// </summary>
[MemoryDiagnoser]
#pragma warning disable CA1001 // BenchmarkDotNet derives from the class and owns its lifetime; Cleanup disposes the JSON writer
public class HotPathBenchmarks
#pragma warning restore CA1001
{
    private const string Audience = "https://broker.example";
    private byte[] _form = [];
    private string _jobToken = "";
    private JsonWebKey _issuerKey = null!;
    private JobTokenClaims _claims = null!;
    private RuleSet _rules10 = null!;
    private RuleSet _rules1000 = null!;
    private ProviderDescriptor _github = null!;
    private LocalKeySigner _es256 = null!;
    private LocalKeySigner _rs256 = null!;
    private MintRequest _mint = null!;
    private readonly HashSet<string> _algorithms = ["RS256", "ES256"];
    private readonly JwtReadLimits _limits = new(16 * 1024, 100, 8);
    private readonly LimitsOptions _formLimits = new();
    private AuditEvent _audit = null!;
    private readonly ArrayBufferWriter<byte> _auditLine = new(1024);
    private Utf8JsonWriter _auditJson = null!;
    private IssuedToken _issued = null!;

    [GlobalSetup]
    public void Setup()
    {
        var rsa = RSA.Create(2048);
        var p = rsa.ExportParameters(false);
        _issuerKey = new JsonWebKey { Kty = "RSA", N = Base64UrlEncoder.Encode(p.Modulus), E = Base64UrlEncoder.Encode(p.Exponent), Kid = "k1", Alg = "RS256" };
        var payload = new JsonObject();
        foreach (var (k, v) in Fixtures.Load("github", "push_main_production"))
        {
            payload[k] = v;
        }

        payload["iss"] = "https://token.actions.githubusercontent.com";
        payload["aud"] = Audience;
        payload["iat"] = 1_800_000_000;
        payload["exp"] = 1_800_000_300;
        payload["jti"] = Guid.NewGuid().ToString();
        var input = Base64Url.Encode(Encoding.UTF8.GetBytes("{\"typ\":\"JWT\",\"alg\":\"RS256\",\"kid\":\"k1\"}")) + "." + Base64Url.Encode(Encoding.UTF8.GetBytes(payload.ToJsonString()));
        _jobToken = input + "." + Base64Url.Encode(rsa.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1));
        _form = Encoding.ASCII.GetBytes($"grant_type={Uri.EscapeDataString(TokenTypes.TokenExchangeGrant)}&subject_token={_jobToken}&subject_token_type={Uri.EscapeDataString(TokenTypes.IdToken)}&audience={Uri.EscapeDataString("https://deploy.internal/payments")}");

        using (var jwt = JwtReader.Read(_jobToken, _algorithms, _limits).Token!)
        {
            _claims = new JobTokenClaims(jwt.Payload);
        }

        _github = new ProviderDescriptor("github", ProviderKind.GitHub, true, ClaimVocabulary.GitHub);
        _rules10 = Compile(10);
        _rules1000 = Compile(1000);
        _es256 = LocalKeySigner.Generate("ES256");
        _rs256 = LocalKeySigner.Generate("RS256");
        _mint = new MintRequest
        {
            Issuer = Audience,
            Subject = "github:octo-org/payments:production",
            Audiences = ["https://deploy.internal/payments"],
            IssuedAt = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000),
            ExpiresAt = DateTimeOffset.FromUnixTimeSeconds(1_800_000_600),
            Jti = TokenMinter.NewJti(),
            ClientId = "github:octo-org/payments",
            Scopes = ["deploy:payments"],
            Type = "at+jwt",
            Context = [new("repo", "octo-org/payments"), new("repo_id", "900101"), new("ref", "refs/heads/main"), new("stage", "deploy"), new("provider", "github"), new("rule", "r")],
            Extra = [],
        };

        // A granted exchange as the audit log sees it, and the response that carries its token.
        _audit = new AuditEvent
        {
            Type = "exchange",
            RequestId = "0HN8QK2V0F3GL:00000001",
            Time = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000),
            ClientIp = "10.1.2.3",
            Provider = "github",
            RepositoryId = "900101",
            Repository = "octo-org/payments",
            RunId = "5551234567",
            RunnerEnvironment = "github-hosted",
            JobTokenJti = Guid.NewGuid().ToString(),
            JobTokenSha256 = AuditEvent.Hash(_jobToken),
            Rule = "match",
            RequestedAudiences = ["https://deploy.internal/payments"],
            GrantedAudiences = ["https://deploy.internal/payments"],
            GrantedScopes = ["deploy:payments"],
            Outcome = "issued",
            IssuedJti = TokenMinter.NewJti(),
            IssuedExpiresAt = DateTimeOffset.FromUnixTimeSeconds(1_800_000_600),
            LatencyMs = 0.412,
        };
        _auditJson = new Utf8JsonWriter(_auditLine);
        _issued = new IssuedToken(TokenMinter.Mint(_mint, _es256), TokenTypes.AccessToken, "Bearer", 600, "deploy:payments");
    }

    [GlobalCleanup]
    public void Cleanup() => _auditJson.Dispose();

    /// <summary>N rules for other repositories, then the one that matches: the worst case for a linear scan.</summary>
    private RuleSet Compile(int count)
    {
        var yaml = new StringBuilder("rules:\n");
        for (var i = 0; i < count - 1; i++)
        {
            yaml.Append(System.Globalization.CultureInfo.InvariantCulture, $"  - id: other-{i}\n    provider: github\n    when: {{ owner_id: \"5001\", repository_id: \"{100000 + i}\", ref: refs/heads/main }}\n    grant: {{ audiences: [https://deploy.internal/payments], stage: deploy, subject: \"s:{{repository}}\" }}\n");
        }

        yaml.Append("  - id: match\n    provider: github\n    when: { owner_id: \"5001\", repository_id: \"900101\", ref: refs/heads/main, environment: production, event: { in: [push] }, workflow_ref: { glob: \"octo-org/workflows/.github/workflows/deploy.yml@refs/tags/v*\" } }\n    grant: { audiences: [https://deploy.internal/payments], scopes: [deploy:payments], stage: deploy, subject: \"github:{repository}:{environment}\" }\n");
        var result = new RuleCompiler(new Dictionary<string, ProviderDescriptor> { ["github"] = _github }, new RuleLoadOptions())
            .Compile([new RuleSource("bench.yaml", yaml.ToString())]);
        return result.RuleSet ?? throw new InvalidOperationException(string.Join("\n", result.Diagnostics));
    }

    [Benchmark]
    public int ParseForm() => FormBody.Parse(_form, 32, out _)!.Count;

    /// <summary>Form parsing and the request checks after it (what ExchangeRequestReader does once the body is read).</summary>
    [Benchmark]
    public bool ParseAndInterpretForm() => ExchangeRequestReader.Interpret(FormBody.Parse(_form, 32, out _)!, _formLimits).Request is not null;

    /// <summary>One audit line of a granted exchange, as the audit writer serialises it (reused buffer and writer).</summary>
    [Benchmark]
    public int AuditLine()
    {
        _auditLine.ResetWrittenCount();
        AuditJson.WriteLine(_audit, _auditLine, _auditJson);
        return _auditLine.WrittenCount;
    }

    /// <summary>The success response body (the issued token), serialised for one write with Content-Length.</summary>
    [Benchmark]
    public int SuccessResponseBody()
    {
        var body = JsonResponseBuffer.Rent();
        TokenEndpoints.WriteSuccessBody(body.Writer, _issued);
        var length = body.Written.Length;
        body.Return();
        return length;
    }

    [Benchmark]
    public bool ReadJobToken()
    {
        using var jwt = JwtReader.Read(_jobToken, _algorithms, _limits).Token!;
        return jwt.KeyId is not null;
    }

    [Benchmark]
    public string? ReadClaims()
    {
        using var jwt = JwtReader.Read(_jobToken, _algorithms, _limits).Token!;
        return new JobTokenClaims(jwt.Payload).Get("repository_id");
    }

    [Benchmark]
    public bool VerifyRs256JobToken()
    {
        using var jwt = JwtReader.Read(_jobToken, _algorithms, _limits).Token!;
        return jwt.VerifySignature(_issuerKey);
    }

    [Benchmark]
    public PolicyOutcome EvaluateRules10() => PolicyEvaluator.Evaluate(_rules10, _github, _claims, new PolicyRequest("github", ["https://deploy.internal/payments"], null)).Outcome;

    [Benchmark]
    public PolicyOutcome EvaluateRules1000() => PolicyEvaluator.Evaluate(_rules1000, _github, _claims, new PolicyRequest("github", ["https://deploy.internal/payments"], null)).Outcome;

    [Benchmark]
    public string MintAndSignEs256() => TokenMinter.Mint(_mint, _es256);

    [Benchmark]
    public string MintAndSignRs256() => TokenMinter.Mint(_mint, _rs256);

    /// <summary>The cryptographic floor of one exchange: verify the RS256 job token, sign an ES256 token.</summary>
    [Benchmark]
    public string VerifyAndSignCeiling()
    {
        using var jwt = JwtReader.Read(_jobToken, _algorithms, _limits).Token!;
        if (!jwt.VerifySignature(_issuerKey))
        {
            throw new InvalidOperationException("signature");
        }

        return TokenMinter.Mint(_mint, _es256);
    }
}
