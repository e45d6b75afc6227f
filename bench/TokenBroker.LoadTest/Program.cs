using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using TokenBroker.Demo;
using TokenBroker.Exchange;
using TokenBroker.Tokens;

// End-to-end exchange benchmark. Starts a fake CI issuer (in this process), the broker (a separate Release
// process, so its CPU and RSS are its own), pre-mints unique job tokens, drives POST /token over loopback at several
// concurrency levels, and measures the in-process cryptographic ceiling in the same run.
if (args.Length > 0 && args[0] == BareServer.Command)
{
    return await BareServer.RunAsync(args);
}

var options = LoadOptions.Parse(args);
using var redis = options.Redis ? RedisServer.Start() : null;
if (redis is not null)
{
    options.BrokerSettings["TokenBroker:State:Store"] = "redis";
    options.BrokerSettings["TokenBroker:State:Redis:Endpoints:0"] = $"127.0.0.1:{redis.Port}";
    Console.WriteLine($"redis-server on 127.0.0.1:{redis.Port}");
}

await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");
var brokerUrl = $"http://127.0.0.1:{FakeCiIssuer.FreePort()}";
issuer.DefaultAudience = brokerUrl;
var claims = Fixtures.Load("github", "push_main_production");
string[] Mint(int count)
{
    var minted = new string[count];
    Parallel.For(0, count, i => minted[i] = issuer.Mint("github", claims, brokerUrl, lifetime: TimeSpan.FromMinutes(30)));
    return minted;
}

if (options.Variants.Count > 0)
{
    return await Compare.RunAsync(options, issuer, brokerUrl, redis, Mint);
}

await using var broker = await BrokerProcess.StartAsync(options, options.BrokerDll, options.BrokerEnvironment, options.BrokerSettings, issuer, brokerUrl);
using var client = BrokerProcess.Client(brokerUrl);
Console.WriteLine($"load driver: {options.Driver}" + (options.Driver == "wrk" ? $" ({options.DurationSeconds} s per level)" : $" ({options.RequestsPerLevel} requests per level)"));
Console.WriteLine($"pre-minting {options.Warmup} warm-up job tokens ...");

if (options.Driver == "wrk" && options.WarmupSeconds > 0)
{
    Console.WriteLine($"warming up for {options.WarmupSeconds} s at 32 connections ...");
}

// Without the steady-state part, whichever level runs first is measured partly on unoptimised code (32 connections
// measured alone after a 2,000-request warm-up: ~3,300/s; after it: see docs/performance.md).
var exchanges = await broker.WarmUpAsync(
    options, Mint(options.Warmup), options.Driver == "wrk" ? Mint(options.WarmupSeconds * options.WrkTokensPerSecond) : []);

// The ceiling is measured on an idle machine: the broker may still be draining audit lines of the warm-up.
await broker.WaitIdleAsync();
var sample = await Ceiling.SampleAsync(client, issuer, Mint(1)[0], options.Audience);
var rounds = Ceiling.Measure(sample, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(2), 3);
var ceiling = rounds.Median;
var toyRounds = Ceiling.Measure(Ceiling.Toy(), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), 3);
var toyCeiling = toyRounds.Median;
Console.WriteLine();
Console.WriteLine($"in-process ceiling (read + verify this run's RS256 job token, mint + sign the ES256 token the broker issued for it; {Environment.ProcessorCount} threads): {rounds}");
Console.WriteLine($"  the same with a minimal job token (6 claims) and issued token (the ceiling of the first five sessions): {toyRounds}");

// What HTTP alone costs here. One exchange costs the machine at least its cryptography (1 / ceiling of both cores)
// plus a request (1 / this), so no broker exceeds 1 / (1 / ceiling + 1 / floor) exchanges/s on this machine.
if (options.Driver == "wrk")
{
    await broker.WaitIdleAsync();
    var healthz = await Wrk.HealthzAsync(brokerUrl, 32, 5, options.WrkThreads);
    var bound = 1 / ((1 / ceiling) + (1 / healthz));
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"HTTP floor: GET /healthz at 32 connections {healthz:F0} /s; ceiling and floor together bound an exchange to {bound:F0} /s ({bound / ceiling:P0} of the ceiling)"));
}

Console.WriteLine();
Console.WriteLine("| connections | exchanges/s | p50 ms | p90 ms | p99 ms | errors | broker CPU % | broker peak RSS MB | ratio to ceiling | ratio to minimal-token ceiling | Redis CPU µs/exchange |");
Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
foreach (var level in options.Levels)
{
    // Unique job tokens for this level, minted before it starts so minting never competes with the measurement.
    var tokens = Mint(options.Driver == "wrk" ? options.WrkTokensPerLevel : options.RequestsPerLevel);
    var measured = await broker.MeasureAsync(redis, () => options.Driver == "wrk"
        ? Wrk.RunAsync(brokerUrl, tokens, level, options)
        : HttpDriver.RunAsync(client, new ArraySegment<string>(tokens), level, options.Audience));
    var result = measured.Result;
    exchanges += result.Count;
    var rss = ProcessStats.PeakRssMb(broker.Id);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {level} | {result.PerSecond:F0} | {result.P(50):F2} | {result.P(90):F2} | {result.P(99):F2} | {result.Errors} | {measured.CpuPercent:F0} | {rss:F0} | {result.PerSecond / ceiling:P0} | {result.PerSecond / toyCeiling:P0} | {measured.RedisUsPerExchange} |"));
}

if (options.Bare)
{
    await broker.WaitIdleAsync();
    await BareServer.MeasureAsync(options, sample, Mint(options.WrkTokensPerLevel), ceiling);
}

if (redis is not null)
{
    Console.WriteLine($"Redis used_memory after {exchanges} exchanges: {redis.UsedMemory() / 1024.0 / 1024.0:F1} MiB");
}

// Every request (granted or refused) leaves one audit line; the writer may still be draining its buffer.
await broker.WaitIdleAsync();
Console.WriteLine($"audit events written: {broker.AuditLines()} ({broker.AuditMegabytes():F1} MiB)");

// With Redis, the reference server again, now with the broker's replay write (its table bounds any broker whose replay
// state lives in Redis on this machine). After the figures above: it empties Redis first.
if (options.Bare && redis is not null)
{
    await BareServer.MeasureAsync(options, sample, [], ceiling, redis, Mint);
}
return 0;

/// <summary>The earlier C# driver: an HttpClient loop over the tokens on <c>connections</c> concurrent requests.</summary>
internal static class HttpDriver
{
    public static async Task<LevelResult> RunAsync(HttpClient client, ArraySegment<string> tokens, int connections, string audience)
    {
        var start = 0;
        var count = tokens.Count;
        var latencies = new double[count];
        var errors = 0;
        var cursor = start - 1;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, connections).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref cursor)) < start + count)
            {
                using var content = new FormUrlEncodedContent(
                [
                    new("grant_type", TokenTypes.TokenExchangeGrant),
                    new("subject_token", tokens[i]!),
                    new("subject_token_type", TokenTypes.IdToken),
                    new("audience", audience),
                ]);
                var t = Stopwatch.GetTimestamp();
                using var response = await client.PostAsync(new Uri("/token", UriKind.Relative), content);
                await response.Content.ReadAsByteArrayAsync();
                latencies[i - start] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    Interlocked.Increment(ref errors);
                }
            }
        }));
        clock.Stop();
        Array.Sort(latencies);
        return new LevelResult(count, clock.Elapsed, latencies, errors);
    }
}

internal sealed record LevelResult(int Count, TimeSpan Elapsed, double[] SortedLatencies, int Errors)
{
    /// <summary>Percentiles computed by the load tool itself (wrk), in milliseconds; null for the C# driver.</summary>
    public IReadOnlyDictionary<int, double>? Percentiles { get; init; }

    public double PerSecond => Count / Elapsed.TotalSeconds;

    public double P(int percentile) => Percentiles is { } known
        ? known[percentile]
        : SortedLatencies[Math.Min(SortedLatencies.Length - 1, (int)Math.Ceiling(percentile / 100.0 * SortedLatencies.Length) - 1)];
}

/// <summary>
/// Drives one level with wrk (Debian package <c>wrk</c>) and bench/wrk/exchange.lua: a C load generator costs far
/// less CPU per request than an HttpClient loop, which matters when it shares the broker's two cores.
/// </summary>
internal static class Wrk
{
    /// <summary>
    /// Requests/s of <c>GET /healthz</c> (a constant text answer through the broker's middleware: no body to read, no
    /// cryptography, no state, no audit line) at <paramref name="connections"/>: what HTTP over loopback costs on this
    /// machine with the load generator on the same cores.
    /// </summary>
    public static async Task<double> HealthzAsync(string brokerUrl, int connections, int seconds, int threads)
    {
        var start = new ProcessStartInfo("wrk",
        [
            "-t", Math.Min(threads, connections).ToString(CultureInfo.InvariantCulture),
            "-c", connections.ToString(CultureInfo.InvariantCulture),
            "-d", seconds.ToString(CultureInfo.InvariantCulture) + "s",
            brokerUrl + "/healthz",
        ])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var wrk = Process.Start(start) ?? throw new InvalidOperationException("wrk did not start (apt-get install wrk)");
        var stdout = await wrk.StandardOutput.ReadToEndAsync();
        await wrk.WaitForExitAsync();
        if (stdout.Contains("Non-2xx", StringComparison.Ordinal) || stdout.Contains("Socket errors", StringComparison.Ordinal))
        {
            throw new InvalidOperationException("GET /healthz failed under load: " + stdout);
        }

        var line = stdout.Split('\n').First(l => l.StartsWith("Requests/sec:", StringComparison.Ordinal));
        return double.Parse(line["Requests/sec:".Length..].Trim(), CultureInfo.InvariantCulture);
    }

    public static async Task<LevelResult> RunAsync(string brokerUrl, string[] tokens, int connections, LoadOptions options)
    {
        var threads = Math.Min(options.WrkThreads, connections);
        var dir = Directory.CreateTempSubdirectory("tb-bench-wrk-").FullName;
        try
        {
            // Whole requests, formatted here rather than in wrk (see bench/wrk/exchange.lua): each one preceded by its
            // length in 8 digits, one file per wrk thread, every token in exactly one of them.
            var prefix = Path.Combine(dir, "requests");
            var head = "POST /token HTTP/1.1\r\nHost: " + new Uri(brokerUrl).Authority + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ";
            var files = Enumerable.Range(0, threads).Select(t => new StreamWriter(prefix + "." + t.ToString(CultureInfo.InvariantCulture), false, new UTF8Encoding(false))).ToArray();
            for (var i = 0; i < tokens.Length; i++)
            {
                var body =
                    "grant_type=" + Uri.EscapeDataString(TokenTypes.TokenExchangeGrant) +
                    "&subject_token=" + Uri.EscapeDataString(tokens[i]) +
                    "&subject_token_type=" + Uri.EscapeDataString(TokenTypes.IdToken) +
                    "&audience=" + Uri.EscapeDataString(options.Audience);
                var request = head + body.Length.ToString(CultureInfo.InvariantCulture) + "\r\n\r\n" + body;
                files[i % threads].Write(request.Length.ToString("D8", CultureInfo.InvariantCulture));
                files[i % threads].Write(request);
            }

            foreach (var f in files)
            {
                await f.DisposeAsync();
            }

            var script = Path.GetFullPath("bench/wrk/exchange.lua");
            var start = new ProcessStartInfo("wrk",
            [
                "-t", threads.ToString(CultureInfo.InvariantCulture),
                "-c", connections.ToString(CultureInfo.InvariantCulture),
                "-d", options.DurationSeconds.ToString(CultureInfo.InvariantCulture) + "s",
                "--timeout", "10s",
                "-s", script,
                brokerUrl,
            ])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                Environment = { ["TB_REQUESTS"] = prefix },
            };
            using var wrk = Process.Start(start) ?? throw new InvalidOperationException("wrk did not start (apt-get install wrk)");
            var stdout = wrk.StandardOutput.ReadToEndAsync();
            var stderr = wrk.StandardError.ReadToEndAsync();
            await wrk.WaitForExitAsync();
            var line = (await stdout).Split('\n').FirstOrDefault(l => l.StartsWith("WRK_RESULT ", StringComparison.Ordinal))
                ?? throw new InvalidOperationException($"wrk gave no result (exit {wrk.ExitCode}): {await stderr}");
            var json = JsonNode.Parse(line["WRK_RESULT ".Length..])!;
            if ((int)json["exhausted"]! > 0)
            {
                throw new InvalidOperationException($"wrk ran out of pre-minted tokens at {connections} connections; raise --wrk-rate or --wrk-tokens ({line})");
            }

            return new LevelResult(
                (int)json["requests"]!,
                TimeSpan.FromMicroseconds((long)json["duration_us"]!),
                [],
                (int)json["http_errors"]! + (int)json["socket_errors"]!)
            {
                Percentiles = new Dictionary<int, double>
                {
                    [50] = (long)json["p50_us"]! / 1000.0,
                    [90] = (long)json["p90_us"]! / 1000.0,
                    [99] = (long)json["p99_us"]! / 1000.0,
                },
            };
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}

/// <summary>CPU time and peak RSS of another process, from /proc.</summary>
internal static class ProcessStats
{
    public static TimeSpan CpuTime(int pid)
    {
        var fields = File.ReadAllText($"/proc/{pid}/stat").Split(')')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return TimeSpan.FromSeconds(ticks / 100.0);
    }

    public static double PeakRssMb(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }
}

/// <summary>A throw-away redis-server on a free loopback port (no persistence), stopped on dispose.</summary>
internal sealed class RedisServer : IDisposable
{
    private readonly Process _process;
    private readonly string _dir;

    private RedisServer(Process process, int port, string dir)
    {
        _process = process;
        Port = port;
        _dir = dir;
    }

    public int Port { get; }

    public int ProcessId => _process.Id;

    public static RedisServer Start()
    {
        var port = FakeCiIssuer.FreePort();
        var dir = Directory.CreateTempSubdirectory("tb-bench-redis-").FullName;
        var process = Process.Start(new ProcessStartInfo("redis-server", ["--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir])
        {
            RedirectStandardOutput = true,
        }) ?? throw new InvalidOperationException("redis-server did not start (apt-get install redis-server)");
        for (var i = 0; i < 100; i++)
        {
            try
            {
                using var client = new System.Net.Sockets.TcpClient("127.0.0.1", port);
                return new RedisServer(process, port, dir);
            }
            catch (System.Net.Sockets.SocketException)
            {
                Thread.Sleep(50);
            }
        }

        process.Kill();
        throw new TimeoutException("redis-server did not accept connections");
    }

    /// <summary>Empties the server between the broker runs of a comparison (the job tokens are used again).</summary>
    public void FlushAll()
    {
        using var cli = Process.Start(new ProcessStartInfo("redis-cli", ["-p", Port.ToString(CultureInfo.InvariantCulture), "FLUSHALL"]) { RedirectStandardOutput = true })!;
        if (cli.StandardOutput.ReadToEnd().Trim() != "OK")
        {
            throw new InvalidOperationException("redis-cli FLUSHALL failed");
        }

        cli.WaitForExit();
    }

    /// <summary>Redis memory in use, from INFO.</summary>
    public long UsedMemory()
    {
        using var cli = Process.Start(new ProcessStartInfo("redis-cli", ["-p", Port.ToString(CultureInfo.InvariantCulture), "INFO", "memory"]) { RedirectStandardOutput = true })!;
        var line = cli.StandardOutput.ReadToEnd().Split('\n').First(l => l.StartsWith("used_memory:", StringComparison.Ordinal));
        return long.Parse(line["used_memory:".Length..].Trim(), CultureInfo.InvariantCulture);
    }

    public void Dispose()
    {
        _process.Kill();
        _process.WaitForExit();
        _process.Dispose();
        Directory.Delete(_dir, true);
    }
}

internal sealed record LoadOptions(string BrokerDll, int[] Levels, int RequestsPerLevel, int Warmup, string Audience, bool ServerGc, bool Redis, Dictionary<string, string> BrokerSettings)
{
    /// <summary><c>wrk</c> (default when installed) or <c>dotnet</c> (an HttpClient loop in this process).</summary>
    public string Driver { get; init; } = "dotnet";

    /// <summary>Extra environment variables for the broker process (<c>--env NAME=VALUE</c>, repeatable).</summary>
    public Dictionary<string, string> BrokerEnvironment { get; init; } = [];

    /// <summary>wrk: seconds of load at 32 connections before the first level (steady state). Default: 15.</summary>
    public int WarmupSeconds { get; init; } = 15;

    /// <summary>wrk: seconds per level.</summary>
    public int DurationSeconds { get; init; } = 5;

    /// <summary>wrk: threads (at most one per connection).</summary>
    public int WrkThreads { get; init; } = 2;

    /// <summary>wrk: unique job tokens minted per second of load (<c>--wrk-rate</c>), for the warm-up and each level.</summary>
    public int WrkTokensPerSecond { get; init; } = 25000;

    /// <summary>Builds or configurations to compare in interleaved rounds (<c>--variant LABEL</c>); none for a normal run.</summary>
    public IReadOnlyList<Variant> Variants { get; init; } = [];

    /// <summary>Also measure the reference server (<c>--bare</c>): HTTP and the cryptography only, see <see cref="BareServer"/>.</summary>
    public bool Bare { get; init; }

    /// <summary>Rounds of a comparison (<c>--rounds</c>, default 3).</summary>
    public int Rounds { get; init; } = 3;

    /// <summary>wrk: unique job tokens minted per level; more than the level can use in DurationSeconds.</summary>
    public int WrkTokensPerLevel { get; init; }

    public static LoadOptions Parse(string[] args)
    {
        string Value(string name, string fallback)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }

        // --wrk-threads after a --variant is that variant's own (see below); only one before the first --variant is the run's.
        int RunWrkThreads()
        {
            var i = Array.IndexOf(args, "--wrk-threads");
            var firstVariant = Array.IndexOf(args, "--variant");
            return i >= 0 && i + 1 < args.Length && (firstVariant < 0 || i < firstVariant) ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : 2;
        }

        // --set, --env and --broker before the first --variant are the run's own; after a --variant LABEL they belong
        // to that variant, which starts from the run's (Redis endpoint included) and adds its own.
        var broker = "src/TokenBroker/bin/Release/net10.0/tokenbroker.dll";
        var settings = new Dictionary<string, string>();
        var environment = new Dictionary<string, string>();
        var variants = new List<Variant>();
        for (var i = 0; i < args.Length; i++)
        {
            var (target, env) = variants.Count > 0 ? (variants[^1].Settings, variants[^1].Environment) : (settings, environment);
            if (args[i] == "--reference" && variants.Count > 0)
            {
                variants[^1] = variants[^1] with { Reference = true };
                continue;
            }

            if (args[i] == "--reference-state" && variants.Count > 0)
            {
                variants[^1] = variants[^1] with { Reference = true, ReferenceState = true };
                continue;
            }

            if (i == args.Length - 1)
            {
                break;
            }

            switch (args[i])
            {
                case "--set" or "--env":
                    var kv = args[i + 1].Split('=', 2);
                    (args[i] == "--set" ? target : env)[kv[0]] = kv[1];
                    break;
                case "--broker" when variants.Count == 0:
                    broker = args[i + 1];
                    break;
                case "--broker":
                    variants[^1] = variants[^1] with { BrokerDll = args[i + 1] };
                    break;
                case "--wrk-threads" when variants.Count > 0:
                    variants[^1] = variants[^1] with { WrkThreads = int.Parse(args[i + 1], CultureInfo.InvariantCulture) };
                    break;
                case "--variant":
                    variants.Add(new Variant(args[i + 1], broker, new Dictionary<string, string>(environment), new Dictionary<string, string>(settings)));
                    break;
            }
        }

        var duration = int.Parse(Value("--duration", "5"), CultureInfo.InvariantCulture);
        var tokensPerSecond = int.Parse(Value("--wrk-rate", "25000"), CultureInfo.InvariantCulture);
        var onPath = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, "wrk")));
        return new LoadOptions(
            broker,
            Value("--connections", "1,8,32,128").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(),
            int.Parse(Value("--requests", "5000"), CultureInfo.InvariantCulture),
            int.Parse(Value("--warmup", "2000"), CultureInfo.InvariantCulture),
            Value("--audience", "https://deploy.internal/payments"),
            Value("--server-gc", "false") == "true",
            Array.IndexOf(args, "--redis") >= 0,
            settings)
        {
            Driver = Value("--driver", onPath ? "wrk" : "dotnet"),
            BrokerEnvironment = environment,
            WarmupSeconds = int.Parse(Value("--warmup-seconds", "15"), CultureInfo.InvariantCulture),
            DurationSeconds = duration,
            WrkThreads = RunWrkThreads(),
            Variants = variants,
            Bare = Array.IndexOf(args, "--bare") >= 0,
            Rounds = int.Parse(Value("--rounds", "3"), CultureInfo.InvariantCulture),

            // More tokens than any measured end-to-end rate on two cores needs (the best so far is under 20,000
            // exchanges/s; the reference server gets twice as many); a level that runs out is reported, not hidden.
            WrkTokensPerSecond = tokensPerSecond,
            WrkTokensPerLevel = int.Parse(Value("--wrk-tokens", (duration * tokensPerSecond + 2000).ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture),
        };
    }
}
