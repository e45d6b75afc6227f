using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using TokenBroker.Exchange;
using TokenBroker.Signing;
using TokenBroker.State;
using TokenBroker.State.Redis;
using TokenBroker.Tokens;

/// <summary>
/// <c>--bare</c>: a reference server with nothing but HTTP and the exchange's cryptography, to tell what the broker's
/// own work costs against what ASP.NET Core and the machine cost anyway. <c>POST /token</c> reads the form with
/// ASP.NET Core's reader, reads and verifies the RS256 job token with the broker's reader and verifier, mints and
/// signs the ES256 token the broker issued for the ceiling's sample exchange (the same claims every time) with the
/// broker's minter, and answers the RFC 8693 JSON. No rules, no replay state, no Redis, no audit line, no security
/// headers, no request id, no metrics. It is not a token service: it checks nothing but the signature.
/// <para>
/// With a Redis endpoint (<c>--bare</c> with <c>--redis</c>, or <c>--reference-state</c> after a comparison's
/// <c>--reference</c>) it also makes the broker's replay write for every token, through the broker's own
/// <see cref="RedisStateStore"/>: the same pipelined replay mark and issued-token record, one round trip, refusing a
/// replay. That is the least any broker whose replay state is shared by its replicas must add to HTTP and the
/// cryptography, so its rate bounds what such a broker can reach on this machine.
/// </para>
/// </summary>
internal static class BareServer
{
    public const string Command = "bare-server";

    /// <summary>The arguments the load test starts this server with (its own dll, then these).</summary>
    public static string[] Arguments(string url, CeilingSample sample, string? redisEndpoint = null) =>
    [
        Command, url, sample.Key.N, sample.Key.E, sample.Key.Kid, sample.IssuedSegments!.Value.Header, sample.IssuedSegments.Value.Payload,
        .. redisEndpoint is null ? Array.Empty<string>() : [redisEndpoint],
    ];

    /// <summary>
    /// Starts the reference server as its own process (this assembly, <see cref="Command"/>), warms it up and drives
    /// each level with wrk over <paramref name="levelTokens"/> (it keeps no replay state, so the same tokens serve every
    /// level, each twice, as it outruns the broker); prints a table in the shape of the broker's.
    /// </summary>
    public static async Task MeasureAsync(LoadOptions options, CeilingSample sample, string[] levelTokens, double ceiling, RedisServer? redis = null, Func<int, string[]>? mint = null)
    {
        // Without state the server is fed every token twice; with state each token once (a second use is a replay).
        var tokens = redis is null ? Cycle(levelTokens, 2 * levelTokens.Length) : levelTokens;
        var url = $"http://127.0.0.1:{TokenBroker.Demo.FakeCiIssuer.FreePort()}";
        redis?.FlushAll();
        await using var server = await BrokerProcess.StartReferenceAsync(url, sample, redis is null ? null : $"127.0.0.1:{redis.Port}");
        await server.WarmUpAsync(
            options,
            redis is null ? tokens[..Math.Min(2_000, tokens.Length)] : mint!(options.Warmup),
            redis is null ? Cycle(levelTokens, 2 * options.WarmupSeconds * options.WrkTokensPerSecond) : mint!(options.WarmupSeconds * options.WrkTokensPerSecond));
        Console.WriteLine();
        Console.WriteLine(redis is null
            ? "reference server (--bare): HTTP + the same cryptography, nothing else (no rules, state, audit, headers)"
            : "reference server with the replay write (--bare --redis): HTTP + the same cryptography + the broker's one Redis round trip, nothing else");
        Console.WriteLine();
        Console.WriteLine("| connections | exchanges/s | p50 ms | p90 ms | p99 ms | errors | server CPU % | ratio to ceiling |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var level in options.Levels)
        {
            var levelTokensOnce = redis is null ? tokens : mint!(options.WrkTokensPerLevel);
            var measured = await server.MeasureAsync(redis, () => Wrk.RunAsync(url, levelTokensOnce, level, options));
            var result = measured.Result;
            Console.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"| {level} | {result.PerSecond:F0} | {result.P(50):F2} | {result.P(90):F2} | {result.P(99):F2} | {result.Errors} | {measured.CpuPercent:F0} | {result.PerSecond / ceiling:P0} |"));
        }
    }

    /// <summary>
    /// <paramref name="count"/> tokens from <paramref name="tokens"/>, repeated from the start as often as needed: the
    /// reference server keeps no replay state and outruns the broker, so it is fed the same tokens again (twice the
    /// broker's share per second, for its level and for its warm-up) rather than more minted ones.
    /// </summary>
    public static string[] Cycle(string[] tokens, int count) =>
        [.. Enumerable.Range(0, count).Select(i => tokens[i % tokens.Length])];

    public static async Task<int> RunAsync(string[] args)
    {
        var url = args[1];
        var key = Ceiling.PublicJwk(args[2], args[3], args[4]);
        var issued = Ceiling.FromSegments(args[5], args[6]);
        using var signer = LocalKeySigner.Generate("ES256");
        var algorithms = new HashSet<string> { "RS256" };
        using var state = args.Length > 7
            ? await RedisStateStore.ConnectAsync(new RedisStateOptions { Endpoints = [args[7]] }, TimeProvider.System, NullLogger.Instance)
            : null;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(url);
        builder.WebHost.ConfigureKestrel(k => k.AddServerHeader = false);
        var app = builder.Build();
        app.MapGet("/readyz", () => "ok\n");
        app.MapGet("/healthz", () => "ok\n");
        app.MapPost("/token", async (HttpContext http) =>
        {
            var form = await http.Request.ReadFormAsync();
            using var jwt = JwtReader.Read(form["subject_token"].ToString(), algorithms, new JwtReadLimits(16384, 100, 8)).Token;
            if (jwt is null || !jwt.VerifySignature(key))
            {
                http.Response.StatusCode = StatusCodes.Status400BadRequest;
                return;
            }

            if (state is not null && !await ConsumeAsync(state, jwt, issued))
            {
                http.Response.StatusCode = StatusCodes.Status400BadRequest;
                return;
            }

            var token = TokenMinter.Mint(issued, signer);
            http.Response.ContentType = "application/json";
            http.Response.Headers.CacheControl = "no-store";
            await http.Response.WriteAsync(new JsonObject
            {
                ["access_token"] = token,
                ["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token",
                ["token_type"] = "Bearer",
                ["expires_in"] = 600,
            }.ToJsonString());
        });
        await app.RunAsync();
        return 0;
    }

    // The broker's step 6 (ExchangeHandler): the replay key of (iss, jti), and the issued-token record, in one round trip.
    private static async ValueTask<bool> ConsumeAsync(RedisStateStore state, ParsedJwt jwt, MintRequest issued)
    {
        var payload = jwt.Payload;
        var replayKey = ExchangeHandler.ReplayKey(payload.GetProperty("iss").GetString()!, payload.GetProperty("jti").GetString()!);
        var now = DateTimeOffset.UtcNow;
        var record = new IssuedTokenRecord
        {
            Jti = StateKeys.ShardTag(replayKey) + TokenMinter.NewJti(),
            ExpiresAt = now + (issued.ExpiresAt - issued.IssuedAt),
            IssuedAt = now,
            Subject = issued.Subject,
            Rule = "deploy-production",
            Provider = "github",
            RepositoryId = Claim(payload, "repository_id"),
            OwnerId = Claim(payload, "repository_owner_id"),
            RunId = Claim(payload, "run_id"),
        };
        return await state.TryConsumeAsync(replayKey, DateTimeOffset.FromUnixTimeSeconds(payload.GetProperty("exp").GetInt64()).AddMinutes(1), record, CancellationToken.None);

        static string? Claim(System.Text.Json.JsonElement payload, string name) =>
            payload.TryGetProperty(name, out var value) ? value.ToString() : null;
    }
}
