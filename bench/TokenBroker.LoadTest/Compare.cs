using System.Globalization;
using TokenBroker.Demo;

/// <summary>One build or configuration in a comparison: <c>--variant LABEL</c> followed by its own --broker/--env/--set.</summary>
internal sealed record Variant(string Label, string BrokerDll, Dictionary<string, string> Environment, Dictionary<string, string> Settings);

/// <summary>
/// Interleaved A/B(/C...) rounds in one process (<c>--variant</c>, <c>--rounds</c>): this machine's speed drifts by tens of
/// per cent over minutes, so only measurements made together compare. The job tokens are minted once and every broker
/// run starts from an empty Redis (FLUSHALL) or its own in-memory state, so each token is still exchanged once per run
/// and minting (RS256 signatures, the slowest part of a run) is paid once. Round r runs the variants in turn, reversed
/// every other round, so no variant always runs first.
/// </summary>
internal static class Compare
{
    public static async Task<int> RunAsync(LoadOptions options, FakeCiIssuer issuer, string brokerUrl, RedisServer? redis, Func<int, string[]> mint)
    {
        if (options.Driver != "wrk")
        {
            throw new InvalidOperationException("--variant needs wrk (apt-get install wrk)");
        }

        Console.WriteLine($"pre-minting job tokens for {options.Variants.Count} variants x {options.Rounds} rounds ...");
        var httpWarmup = mint(options.Warmup);
        var wrkWarmup = mint(options.WarmupSeconds * options.WrkTokensPerSecond);
        var levelTokens = options.Levels.ToDictionary(level => level, _ => mint(options.WrkTokensPerLevel));
        Console.WriteLine();
        Console.WriteLine("| round | variant | connections | exchanges/s | p50 ms | p99 ms | errors | broker CPU µs/exchange | Redis CPU µs/exchange |");
        Console.WriteLine("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        var results = new List<(Variant Variant, int Level, LevelResult Result, double BrokerUs)>();
        for (var round = 1; round <= options.Rounds; round++)
        {
            var order = round % 2 == 1 ? options.Variants : Enumerable.Reverse(options.Variants).ToList();
            foreach (var variant in order)
            {
                redis?.FlushAll();
                var settings = new Dictionary<string, string>(options.BrokerSettings);
                foreach (var (key, value) in variant.Settings)
                {
                    settings[key] = value;
                }

                await using var broker = await BrokerProcess.StartAsync(options, variant.BrokerDll, variant.Environment, settings, issuer, brokerUrl);
                using (var client = BrokerProcess.Client(brokerUrl))
                {
                    await HttpDriver.RunAsync(client, new ArraySegment<string>(httpWarmup), 8, options.Audience);
                }

                if (options.WarmupSeconds > 0)
                {
                    await Wrk.RunAsync(brokerUrl, wrkWarmup, 32, options with { DurationSeconds = options.WarmupSeconds });
                }

                foreach (var level in options.Levels)
                {
                    await broker.WaitIdleAsync();
                    var cpuBefore = ProcessStats.CpuTime(broker.Id);
                    var redisBefore = redis is null ? TimeSpan.Zero : ProcessStats.CpuTime(redis.ProcessId);
                    var result = await Wrk.RunAsync(brokerUrl, levelTokens[level], level, options);
                    var brokerUs = (ProcessStats.CpuTime(broker.Id) - cpuBefore).TotalMicroseconds / Math.Max(1, result.Count);
                    var redisUs = redis is null ? "-" : ((ProcessStats.CpuTime(redis.ProcessId) - redisBefore).TotalMicroseconds / Math.Max(1, result.Count)).ToString("F0", CultureInfo.InvariantCulture);
                    results.Add((variant, level, result, brokerUs));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {round} | {variant.Label} | {level} | {result.PerSecond:F0} | {result.P(50):F2} | {result.P(99):F2} | {result.Errors} | {brokerUs:F0} | {redisUs} |"));
                }
            }
        }

        Console.WriteLine();
        Console.WriteLine("| variant | connections | median exchanges/s | median p99 ms | median broker CPU µs/exchange | errors |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (var variant in options.Variants)
        {
            foreach (var level in options.Levels)
            {
                var runs = results.Where(r => r.Variant == variant && r.Level == level).ToList();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {variant.Label} | {level} | {Median(runs.Select(r => r.Result.PerSecond)):F0} | {Median(runs.Select(r => r.Result.P(99))):F2} | {Median(runs.Select(r => r.BrokerUs)):F0} | {runs.Sum(r => r.Result.Errors)} |"));
            }
        }

        return results.Any(r => r.Result.Errors > 0) ? 1 : 0;
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
