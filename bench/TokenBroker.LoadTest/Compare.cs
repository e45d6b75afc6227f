using System.Globalization;
using TokenBroker.Demo;

/// <summary>
/// One build or configuration in a comparison: <c>--variant LABEL</c> followed by its own --broker/--env/--set, or by
/// <c>--reference</c> for the reference server (<see cref="BareServer"/>) in place of the broker.
/// </summary>
internal sealed record Variant(string Label, string BrokerDll, Dictionary<string, string> Environment, Dictionary<string, string> Settings)
{
    public bool Reference { get; init; }

    /// <summary>The reference server also makes the broker's replay write (<c>--reference-state</c>, needs <c>--redis</c>).</summary>
    public bool ReferenceState { get; init; }

    /// <summary>wrk threads for this variant's levels (<c>--wrk-threads</c> after its <c>--variant</c>), else the run's.</summary>
    public int? WrkThreads { get; init; }
}

/// <summary>
/// Interleaved A/B(/C...) rounds in one process (<c>--variant</c>, <c>--rounds</c>): this machine's speed drifts by tens of
/// per cent over minutes, so only measurements made together compare. The job tokens are minted once and every broker
/// run starts from an empty Redis (FLUSHALL) or its own in-memory state, so each token is still exchanged once per run
/// and minting (RS256 signatures, the slowest part of a run) is paid once. Round r runs the variants in turn, reversed
/// every other round, so no variant always runs first; each round starts with the in-process ceiling, so every run has
/// a ratio to a ceiling measured minutes, not an hour, from it.
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

        // The ceiling's sample (and the reference server's claims) come from one exchange at the first broker variant.
        var first = options.Variants.FirstOrDefault(v => !v.Reference) ?? new Variant("default", options.BrokerDll, options.BrokerEnvironment, options.BrokerSettings);
        CeilingSample sample;
        await using (var broker = await BrokerProcess.StartAsync(options, first.BrokerDll, first.Environment, Merge(options.BrokerSettings, first.Settings), issuer, brokerUrl))
        using (var client = BrokerProcess.Client(brokerUrl))
        {
            sample = await Ceiling.SampleAsync(client, issuer, mint(1)[0], options.Audience);
        }

        Console.WriteLine();
        Console.WriteLine("| round | variant | connections | exchanges/s | p50 ms | p99 ms | errors | broker CPU µs/exchange | Redis CPU µs/exchange | peak RSS MB | ratio to the round's ceiling |");
        Console.WriteLine("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        var results = new List<(Variant Variant, int Level, LevelResult Result, double BrokerUs, double Ratio, double RssMb)>();
        for (var round = 1; round <= options.Rounds; round++)
        {
            var rounds = Ceiling.Measure(sample, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(2), 3);
            var ceiling = rounds.Median;
            Console.WriteLine($"| {round} | ceiling | | {rounds} | | | | | | |");
            var order = round % 2 == 1 ? options.Variants : Enumerable.Reverse(options.Variants).ToList();
            foreach (var variant in order)
            {
                redis?.FlushAll();
                await using var broker = variant.Reference
                    ? await BrokerProcess.StartReferenceAsync(brokerUrl, sample, variant.ReferenceState && redis is not null ? $"127.0.0.1:{redis.Port}" : null, variant.Environment)
                    : await BrokerProcess.StartAsync(options, variant.BrokerDll, variant.Environment, Merge(options.BrokerSettings, variant.Settings), issuer, brokerUrl);
                await broker.WarmUpAsync(options, httpWarmup, variant.Reference && !variant.ReferenceState ? BareServer.Cycle(wrkWarmup, 2 * wrkWarmup.Length) : wrkWarmup);

                foreach (var level in options.Levels)
                {
                    var tokens = variant.Reference && !variant.ReferenceState ? BareServer.Cycle(levelTokens[level], 2 * levelTokens[level].Length) : levelTokens[level];
                    var measured = await broker.MeasureAsync(redis, () => Wrk.RunAsync(brokerUrl, tokens, level, variant.WrkThreads is { } threads ? options with { WrkThreads = threads } : options));
                    var result = measured.Result;
                    // The server's peak RSS so far (VmHWM): its whole life up to the end of this level, warm-up included.
                    var rss = ProcessStats.PeakRssMb(broker.Id);
                    results.Add((variant, level, result, measured.CpuUsPerExchange, result.PerSecond / ceiling, rss));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {round} | {variant.Label} | {level} | {result.PerSecond:F0} | {result.P(50):F2} | {result.P(99):F2} | {result.Errors} | {measured.CpuUsPerExchange:F0} | {measured.RedisUsPerExchange} | {rss:F0} | {result.PerSecond / ceiling:P0} |"));
                }
            }
        }

        Console.WriteLine();
        Console.WriteLine("| variant | connections | median exchanges/s | median p99 ms | median broker CPU µs/exchange | median ratio to the round's ceiling | highest peak RSS MB | errors |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var variant in options.Variants)
        {
            foreach (var level in options.Levels)
            {
                var runs = results.Where(r => r.Variant == variant && r.Level == level).ToList();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {variant.Label} | {level} | {Stats.Median(runs.Select(r => r.Result.PerSecond)):F0} | {Stats.Median(runs.Select(r => r.Result.P(99))):F2} | {Stats.Median(runs.Select(r => r.BrokerUs)):F0} | {Stats.Median(runs.Select(r => r.Ratio)):P0} | {runs.Max(r => r.RssMb):F0} | {runs.Sum(r => r.Result.Errors)} |"));
            }
        }

        return results.Any(r => r.Result.Errors > 0) ? 1 : 0;
    }

    private static Dictionary<string, string> Merge(IReadOnlyDictionary<string, string> run, IReadOnlyDictionary<string, string> variant)
    {
        var settings = new Dictionary<string, string>(run);
        foreach (var (key, value) in variant)
        {
            settings[key] = value;
        }

        return settings;
    }

}

internal static class Stats
{
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
