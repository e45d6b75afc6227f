using System.Diagnostics;
using System.Text;
using TokenBroker.Demo;

/// <summary>One level's result with the server's CPU (per cent of a core, µs per exchange) and redis-server's (µs per exchange, or "-").</summary>
internal sealed record MeasuredLevel(LevelResult Result, double CpuPercent, double CpuUsPerExchange, string RedisUsPerExchange);

/// <summary>
/// The broker under test as its own process (a Release build of <c>tokenbroker.dll serve</c>), so that its CPU time and
/// peak RSS are its own; its audit log goes to a file in a temporary directory, deleted on dispose.
/// </summary>
internal sealed class BrokerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly string? _auditDir;
    private readonly string? _auditPath;
    private readonly string _url;

    private BrokerProcess(Process process, string url, string? auditDir, string? auditPath)
    {
        _process = process;
        _url = url;
        _auditDir = auditDir;
        _auditPath = auditPath;
    }

    public int Id => _process.Id;

    /// <summary>An HttpClient for the warm-up and the C# driver.</summary>
    public static HttpClient Client(string brokerUrl) =>
        new(new SocketsHttpHandler { MaxConnectionsPerServer = 1024, PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
        {
            BaseAddress = new Uri(brokerUrl),
            Timeout = TimeSpan.FromSeconds(30),
        };

    /// <summary>Starts <paramref name="dll"/> against the fake issuer's github and gitlab providers and waits until it is ready.</summary>
    public static async Task<BrokerProcess> StartAsync(
        LoadOptions options, string dll, IReadOnlyDictionary<string, string> environment, IReadOnlyDictionary<string, string> settings, FakeCiIssuer issuer, string brokerUrl)
    {
        var auditDir = Directory.CreateTempSubdirectory("tb-bench-audit-").FullName;
        var auditPath = Path.Combine(auditDir, "audit.jsonl");
        var args = new List<string>
        {
            dll, "serve", "--urls", brokerUrl,
            $"--TokenBroker:Issuer={brokerUrl}",
            "--TokenBroker:RateLimits:Enabled=false",
            "--TokenBroker:Providers:github:Kind=github",
            $"--TokenBroker:Providers:github:Issuer={issuer.IssuerUrl("github")}",
            "--TokenBroker:Providers:github:AllowHttp=true",
            "--TokenBroker:Providers:github:SharedIssuer=true",
            "--TokenBroker:Providers:gitlab:Kind=gitlab",
            $"--TokenBroker:Providers:gitlab:Issuer={issuer.IssuerUrl("gitlab")}",
            "--TokenBroker:Providers:gitlab:AllowHttp=true",
            "--TokenBroker:Providers:gitlab:SharedIssuer=true",
            // The audit log cannot be turned off (it is its own writer, not a log category): its cost is part of the
            // measurement. It goes to a file, as in a deployment that ships it with a log agent; to stdout it would be parsed
            // line by line by this process's redirected-stream reader, which costs the shared cores more than the broker's write.
            "--TokenBroker:Audit:Sink=file",
            $"--TokenBroker:Audit:Path={auditPath}",
        };
        args.AddRange(settings.Select(kv => $"--{kv.Key}={kv.Value}"));
        var start = new ProcessStartInfo("dotnet", args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment = { ["DOTNET_gcServer"] = options.ServerGc ? "1" : "0" },
        };
        AddEnvironment(start, environment);

        return await LaunchAsync(start, brokerUrl, auditDir, auditPath);
    }

    /// <summary>
    /// Starts the reference server (<see cref="BareServer"/>, this assembly) in place of the broker, with the variant's
    /// environment (e.g. runtime settings) when one is given.
    /// </summary>
    public static Task<BrokerProcess> StartReferenceAsync(string url, CeilingSample sample, string? redisEndpoint = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo("dotnet", [typeof(BareServer).Assembly.Location, .. BareServer.Arguments(url, sample, redisEndpoint)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        AddEnvironment(start, environment ?? new Dictionary<string, string>());
        return LaunchAsync(start, url, null, null);
    }

    private static void AddEnvironment(ProcessStartInfo start, IReadOnlyDictionary<string, string> environment)
    {
        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }
    }

    private static async Task<BrokerProcess> LaunchAsync(ProcessStartInfo start, string brokerUrl, string? auditDir, string? auditPath)
    {
        var broker = new BrokerProcess(Process.Start(start)!, brokerUrl, auditDir, auditPath);
        broker._process.ErrorDataReceived += (_, e) =>
        {
            lock (broker._stderr)
            {
                broker._stderr.AppendLine(e.Data);
            }
        };
        broker._process.OutputDataReceived += (_, _) => { };
        broker._process.BeginErrorReadLine();
        broker._process.BeginOutputReadLine();
        try
        {
            using var client = Client(brokerUrl);
            await broker.WaitReadyAsync(client);
            return broker;
        }
        catch
        {
            await broker.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Waits until the broker uses less than 5 % of a core over 250 ms (at most 30 s): after a level it may still be
    /// writing audit lines, which would be counted against the next measurement.
    /// </summary>
    public async Task WaitIdleAsync()
    {
        var deadline = Stopwatch.StartNew();
        var before = ProcessStats.CpuTime(Id);
        while (deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(250);
            var now = ProcessStats.CpuTime(Id);
            if ((now - before).TotalMilliseconds < 12.5)
            {
                return;
            }

            before = now;
        }
    }

    /// <summary>
    /// JIT, key fetch and connection pool (the HttpClient loop over <paramref name="httpTokens"/>, 8 connections), then
    /// steady state: tiered compilation re-JITs hot methods with profile data during the first tens of seconds under
    /// load, so wrk runs over <paramref name="wrkTokens"/> at 32 connections for the warm-up seconds (none with the C#
    /// driver). Returns the requests sent.
    /// </summary>
    public async Task<int> WarmUpAsync(LoadOptions options, string[] httpTokens, string[] wrkTokens)
    {
        using (var client = Client(_url))
        {
            await HttpDriver.RunAsync(client, new ArraySegment<string>(httpTokens), 8, options.Audience);
        }

        if (options.Driver != "wrk" || options.WarmupSeconds <= 0)
        {
            return httpTokens.Length;
        }

        var warm = await Wrk.RunAsync(_url, wrkTokens, 32, options with { DurationSeconds = options.WarmupSeconds });
        return httpTokens.Length + warm.Count;
    }

    /// <summary>Runs one level once this process is idle, with its CPU time and redis-server's over the level.</summary>
    public async Task<MeasuredLevel> MeasureAsync(RedisServer? redis, Func<Task<LevelResult>> run)
    {
        await WaitIdleAsync();
        var cpuBefore = ProcessStats.CpuTime(Id);
        var redisBefore = redis is null ? TimeSpan.Zero : ProcessStats.CpuTime(redis.ProcessId);
        var result = await run();
        var cpu = ProcessStats.CpuTime(Id) - cpuBefore;
        var count = Math.Max(1, result.Count);
        return new MeasuredLevel(
            result,
            cpu.TotalSeconds / result.Elapsed.TotalSeconds * 100,
            cpu.TotalMicroseconds / count,
            redis is null ? "-" : ((ProcessStats.CpuTime(redis.ProcessId) - redisBefore).TotalMicroseconds / count).ToString("F0", System.Globalization.CultureInfo.InvariantCulture));
    }

    public int AuditLines() => File.ReadLines(_auditPath!).Count();

    public double AuditMegabytes() => new FileInfo(_auditPath!).Length / 1024.0 / 1024.0;

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }

        _process.Dispose();
        if (_auditDir is not null)
        {
            Directory.Delete(_auditDir, true);
        }
    }

    private async Task WaitReadyAsync(HttpClient client)
    {
        for (var i = 0; i < 200; i++)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException("broker exited: " + Errors());
            }

            try
            {
                if ((await client.GetAsync(new Uri("/readyz", UriKind.Relative))).IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }

            await Task.Delay(100);
        }

        throw new TimeoutException("broker did not become ready: " + Errors());
    }

    private string Errors()
    {
        lock (_stderr)
        {
            return _stderr.ToString();
        }
    }
}
