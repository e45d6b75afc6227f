using System.CommandLine;
using TokenBroker.Demo;
using TokenBroker.Hosting;

namespace TokenBroker.Cli;

/// <summary>The <c>tokenbroker</c> command line. Exit codes: 0 ok, 1 findings or failures, 2 usage or configuration error.</summary>
internal static class BrokerCli
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int Usage = 2;

    public static Task<int> RunAsync(string[] args) => RunAsync(args, Console.Out, Console.Error, TimeProvider.System);

    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, TimeProvider time)
    {
        var configOption = new Option<string?>("--config") { Description = "A JSON configuration file (environment variables TokenBroker__... and arguments override it)." };
        var urlsOption = new Option<string?>("--urls") { Description = "Listen URLs, e.g. http://127.0.0.1:8080 (default)." };

        var serve = new Command("serve", "Run the broker (the default verb). With no configuration: in-memory state, a generated ES256 key, the sample rules, http://127.0.0.1:8080.")
        {
            configOption,
            urlsOption,
        };
        serve.TreatUnmatchedTokensAsErrors = false;
        serve.SetAction((parse, cancel) => ServeAsync(parse.GetValue(configOption), parse.GetValue(urlsOption), [.. parse.UnmatchedTokens], cancel));

        var serveFlag = new Option<bool>("--serve") { Description = "Keep the demo's broker and fake issuer running and print their addresses as one JSON line (for interop tests)." };
        var demo = new Command("demo", "Start the broker and a fake CI issuer, exchange a GitHub-shaped job token, print the result and a refusal.")
        {
            serveFlag,
        };
        demo.SetAction(async (parse, cancel) =>
        {
            // The root lets unmatched tokens through (they are ASP.NET configuration for 'serve'); the demo takes none.
            if (parse.UnmatchedTokens.Count > 0)
            {
                await Console.Error.WriteLineAsync($"tokenbroker demo: unrecognized argument(s): {string.Join(' ', parse.UnmatchedTokens)}").ConfigureAwait(false);
                return Usage;
            }

            return await DemoCommand.RunAsync(parse.GetValue(serveFlag), Console.Out, cancel).ConfigureAwait(false);
        });

        var root = new RootCommand("TokenBroker: a security token service for CI/CD (RFC 8693 token exchange for GitHub Actions and GitLab CI job tokens).")
        {
            serve,
            demo,
            KeysCommand.Create(output, error, time),
        };
        root.Options.Add(configOption);
        root.Options.Add(urlsOption);
        root.TreatUnmatchedTokensAsErrors = false;
        root.SetAction((parse, cancel) => ServeAsync(parse.GetValue(configOption), parse.GetValue(urlsOption), [.. parse.UnmatchedTokens], cancel));

        var result = root.Parse(args);
        if (result.Errors.Count > 0)
        {
            foreach (var problem in result.Errors)
            {
                await error.WriteLineAsync($"tokenbroker: {problem.Message}").ConfigureAwait(false);
            }

            await error.WriteLineAsync("Try 'tokenbroker --help'.").ConfigureAwait(false);
            return Usage;
        }

        return await result.InvokeAsync(new InvocationConfiguration { Output = output, Error = error }).ConfigureAwait(false);
    }

    /// <summary>
    /// Unmatched arguments reach ASP.NET configuration only when they are configuration keys
    /// (<c>--TokenBroker:Issuer=https://...</c> or <c>--TokenBroker:Issuer https://...</c>); anything else, such as a
    /// mistyped verb, is a usage error rather than a reason to start a server.
    /// </summary>
    internal static string? CheckConfigurationArguments(IReadOnlyList<string> args)
    {
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || !arg.Contains(':', StringComparison.Ordinal))
            {
                return arg;
            }

            if (!arg.Contains('=', StringComparison.Ordinal))
            {
                if (i + 1 >= args.Count)
                {
                    return arg;
                }

                i++; // the value
            }
        }

        return null;
    }

    private static async Task<int> ServeAsync(string? configFile, string? urls, string[] extraArgs, CancellationToken cancel)
    {
        if (CheckConfigurationArguments(extraArgs) is { } unexpected)
        {
            await Console.Error.WriteLineAsync($"tokenbroker: unrecognized argument '{unexpected}'. Configuration keys are passed as --Section:Key=value. Try 'tokenbroker --help'.").ConfigureAwait(false);
            return Usage;
        }

        var args = urls is null ? extraArgs : [.. extraArgs, "--urls", urls];
        var built = BrokerApp.Build(new BrokerAppOptions { Args = args, ConfigFile = configFile });
        foreach (var warning in built.Warnings)
        {
            await Console.Error.WriteLineAsync($"warning: {warning}").ConfigureAwait(false);
        }

        if (built.App is null)
        {
            await Console.Error.WriteLineAsync($"tokenbroker: the configuration has {built.Errors.Count} problem(s); nothing was started:").ConfigureAwait(false);
            foreach (var error in built.Errors)
            {
                await Console.Error.WriteLineAsync($"  - {error}").ConfigureAwait(false);
            }

            return Usage;
        }

        if (built.Warnings.Count > 0)
        {
            await Console.Error.WriteLineAsync("warning: THIS IS A DEVELOPMENT SETUP. See the configuration reference in README.md before exposing the broker.").ConfigureAwait(false);
        }

        await using var app = built.App;
        await app.StartAsync(cancel).ConfigureAwait(false);
        await app.WaitForShutdownAsync(cancel).ConfigureAwait(false);
        return Ok;
    }
}
