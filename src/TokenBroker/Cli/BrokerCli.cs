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

    public static async Task<int> RunAsync(string[] args, TextWriter? output = null, TextWriter? error = null, TimeProvider? time = null)
    {
        var stderr = error ?? Console.Error;
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
            RulesCommand(output ?? Console.Out, error ?? Console.Error, time ?? TimeProvider.System),
            CredentialsCommand.Build(),
            KeysCommand.Create(output ?? Console.Out, stderr, time ?? TimeProvider.System),
        };
        root.Options.Add(configOption);
        root.Options.Add(urlsOption);
        root.TreatUnmatchedTokensAsErrors = false;
        root.SetAction((parse, cancel) => ServeAsync(parse.GetValue(configOption), parse.GetValue(urlsOption), [.. parse.UnmatchedTokens], cancel));

        var result = root.Parse(args);
        if (result.Errors.Count > 0)
        {
            foreach (var parseError in result.Errors)
            {
                await stderr.WriteLineAsync($"tokenbroker: {parseError.Message}").ConfigureAwait(false);
            }

            await stderr.WriteLineAsync("Try 'tokenbroker --help'.").ConfigureAwait(false);
            return Usage;
        }

        // ProcessTerminationTimeout = null: System.CommandLine would otherwise answer SIGTERM/SIGINT by returning (exit
        // 143/130) two seconds later, cutting off in-flight requests. The host's console lifetime handles the signal
        // instead: readiness flips, requests drain for Hosting:ShutdownTimeout, and serve exits 0.
        return await result.InvokeAsync(new InvocationConfiguration { Output = output ?? Console.Out, Error = stderr, ProcessTerminationTimeout = null }).ConfigureAwait(false);
    }

    /// <summary>
    /// The root lets unmatched tokens through (they are ASP.NET configuration for 'serve'), so the rules verbs refuse
    /// them here, and refuse paths that look like options (a mistyped option must not be read as a file name).
    /// </summary>
    private static int? Unexpected(ParseResult parse, TextWriter error, Argument<string[]>? paths = null)
    {
        var verb = "rules " + parse.CommandResult.Command.Name;
        var stray = parse.UnmatchedTokens.Concat((paths is null ? null : parse.GetValue(paths))?.Where(p => p.StartsWith('-')) ?? []).ToList();
        if (stray.Count == 0)
        {
            return null;
        }

        error.WriteLine($"tokenbroker {verb}: unrecognized argument(s): {string.Join(' ', stray)}. Try 'tokenbroker {verb} --help'.");
        return Usage;
    }

    /// <summary><c>tokenbroker rules validate|lint|explain|test|schema</c>; the work is in <see cref="RulesVerbs"/>.</summary>
    private static Command RulesCommand(TextWriter output, TextWriter error, TimeProvider time)
    {
        Option<string?> Config() => new("--config") { Description = "The broker configuration (JSON or YAML) whose providers, Rules:MaxTtl and Rules:Paths apply; TokenBroker__ environment variables apply too. Default: the built-in defaults (providers github and gitlab)." };
        Option<string> Format() => new Option<string>("--format") { Description = "Output format: text (default) or json.", DefaultValueFactory = _ => "text" }.AcceptOnlyFromAmong("text", "json");
        Option<string[]> RulePaths() => new("--rules") { Description = "Rules files or directories (repeatable). Default: the configured TokenBroker:Rules:Paths, else the built-in sample rules, as 'serve' does." };
        var verbs = new RulesVerbs(output, error, time);

        var validatePaths = new Argument<string[]>("paths") { Description = "Rules files or directories (*.yaml, *.yml).", Arity = ArgumentArity.OneOrMore };
        var validateConfig = Config();
        var validateFormat = Format();
        var validate = new Command("validate", "Check rules files strictly (unknown keys, wrong types, duplicate ids, unknown claims...) and report every error with file:line:column and id. Exit 0 ok, 1 errors, 2 usage.")
        {
            validatePaths, validateConfig, validateFormat,
        };
        validate.SetAction(parse => Unexpected(parse, error, validatePaths) ?? verbs.Validate(parse.GetValue(validatePaths)!, parse.GetValue(validateConfig), parse.GetValue(validateFormat) == "json"));

        var lintPaths = new Argument<string[]>("paths") { Description = "Rules files or directories. Default: what 'serve' would load.", Arity = ArgumentArity.ZeroOrMore };
        var lintConfig = Config();
        var lintFormat = Format();
        var strict = new Option<bool>("--strict") { Description = "Exit 1 on warnings too." };
        var lint = new Command("lint", "Validate, then report safety findings (TB21xx) with a one-line fix each. Exit 0 no errors, 1 errors (or warnings with --strict), 2 usage.")
        {
            lintPaths, lintConfig, lintFormat, strict,
        };
        lint.SetAction(parse => Unexpected(parse, error, lintPaths) ?? verbs.Lint(parse.GetValue(lintPaths) ?? [], parse.GetValue(lintConfig), parse.GetValue(lintFormat) == "json", parse.GetValue(strict)));

        var token = new Option<string?>("--token") { Description = "A job token (JWT), decoded WITHOUT signature verification; '-' reads it from standard input." };
        var claims = new Option<string?>("--claims") { Description = "A JSON file of claims, or FILE#NAME for one token of a fixture file such as samples/fixtures/github.json." };
        var provider = new Option<string?>("--provider") { Description = "The provider name; default: the one whose issuer is the token's iss." };
        var audience = new Option<string[]>("--audience") { Description = "A requested audience (repeatable)." };
        var scope = new Option<string[]>("--scope") { Description = "Requested scopes (repeatable, or space-separated). Omit to request every scope of the deciding rule." };
        var explainRules = RulePaths();
        var explainConfig = Config();
        var explainFormat = Format();
        var explain = new Command("explain", "Dry run: show every rule's conditions against a token's claims (expected, actual, held or failed), the deciding rule, and the token that would be issued (unsigned) or the exact refusal. Exit 0 granted, 1 refused, 2 usage.")
        {
            token, claims, provider, audience, scope, explainRules, explainConfig, explainFormat,
        };
        explain.SetAction(parse =>
        {
            if (Unexpected(parse, error) is { } usage)
            {
                return usage;
            }

            var tokenText = parse.GetValue(token);
            if (tokenText == "-")
            {
                tokenText = Console.In.ReadToEnd();
            }

            var scopes = parse.GetValue(scope);
            return verbs.Explain(new ExplainArguments
            {
                Token = tokenText,
                ClaimsFile = parse.GetValue(claims),
                Provider = parse.GetValue(provider),
                Audiences = parse.GetValue(audience) ?? [],
                Scopes = scopes is { Length: > 0 } ? [.. scopes.SelectMany(s => s.Split(' ', StringSplitOptions.RemoveEmptyEntries))] : null,
                RulePaths = parse.GetValue(explainRules) ?? [],
                ConfigFile = parse.GetValue(explainConfig),
                Json = parse.GetValue(explainFormat) == "json",
            });
        });

        var testPaths = new Argument<string[]>("paths") { Description = "Policy test files or directories (*.yaml, *.yml).", Arity = ArgumentArity.OneOrMore };
        var testRules = RulePaths();
        var testConfig = Config();
        var test = new Command("test", "Run policy tests (YAML): each case gives provider, claims or a fixture, and a request, and expects allow by a rule (with claims) or deny with an error. One line per case, then 'rules test: N passed, M failed'. Exit 0 all passed, 1 any failed, 2 usage.")
        {
            testPaths, testRules, testConfig,
        };
        test.SetAction(parse => Unexpected(parse, error, testPaths) ?? verbs.Test(parse.GetValue(testPaths)!, parse.GetValue(testRules) ?? [], parse.GetValue(testConfig)));

        var schema = new Command("schema", "Print the JSON Schema (draft 2020-12) of rules files (committed as config/rules.schema.json).");
        schema.SetAction(parse => Unexpected(parse, error) ?? verbs.Schema());

        return new Command("rules", "Work with trust rules offline: validate, lint, explain, test, schema.")
        {
            validate, lint, explain, test, schema,
        };
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

        if (built.Settings?.Warnings.Count > 0)
        {
            await Console.Error.WriteLineAsync("warning: THIS IS A DEVELOPMENT SETUP. See the configuration reference in README.md before exposing the broker.").ConfigureAwait(false);
        }

        await using var app = built.App;
        await app.StartAsync(cancel).ConfigureAwait(false);
        await app.WaitForShutdownAsync(cancel).ConfigureAwait(false);
        return Ok;
    }
}
