using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/TokenBroker.Benchmarks -- --filter '*'
BenchmarkSwitcher.FromAssembly(typeof(TokenBroker.Benchmarks.HotPathBenchmarks).Assembly).Run(args);
