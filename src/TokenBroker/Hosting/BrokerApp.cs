using System.Security.Cryptography;
using TokenBroker.Admin;
using TokenBroker.Audit;
using TokenBroker.Configuration;
using TokenBroker.Discovery;
using TokenBroker.Exchange;
using TokenBroker.Providers;
using TokenBroker.RateLimiting;
using TokenBroker.Revocation;
using TokenBroker.Rules;
using TokenBroker.Rules.Diagnostics;
using TokenBroker.Security;
using TokenBroker.Signing;
using TokenBroker.State;
using TokenBroker.State.Redis;
using TokenBroker.Tokens;

namespace TokenBroker.Hosting;

/// <summary>Inputs for building a broker host: the CLI, the demo and tests all go through here.</summary>
internal sealed record BrokerAppOptions
{
    public string[] Args { get; init; } = [];

    /// <summary>A JSON configuration file (<c>--config</c>); environment variables and arguments still override it.</summary>
    public string? ConfigFile { get; init; }

    /// <summary>Settings applied last (demo and tests).</summary>
    public IReadOnlyDictionary<string, string?>? Overrides { get; init; }

    public TimeProvider? Time { get; init; }

    /// <summary>Replaces the default audit sink (tests).</summary>
    public IAuditSink? AuditSink { get; init; }

    /// <summary>Lowest log level for the console (the demo keeps it quiet).</summary>
    public LogLevel MinimumLogLevel { get; init; } = LogLevel.Information;

    /// <summary>Adds to the logging set-up after the broker's own (tests capture every log entry).</summary>
    public Action<ILoggingBuilder>? ConfigureLogging { get; init; }

    /// <summary>Wraps the configured state store (tests inject faults).</summary>
    public Func<IStateStore, IStateStore>? WrapStateStore { get; init; }
}

/// <summary>A built host, or every reason it could not be built.</summary>
internal sealed record BrokerBuildResult(WebApplication? App, ResolvedSettings? Settings, IReadOnlyList<string> Errors, IReadOnlyList<string> Warnings);

/// <summary>Builds the broker: resolves and validates configuration, loads keys and rules, wires the endpoints.</summary>
internal static class BrokerApp
{
    public static BrokerBuildResult Build(BrokerAppOptions options)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = options.Args,
            ContentRootPath = AppContext.BaseDirectory,
        });

        if (AddConfigurationSources(builder.Configuration, options) is { } configError)
        {
            return new BrokerBuildResult(null, null, [configError], []);
        }

        if (string.IsNullOrEmpty(builder.Configuration["urls"]))
        {
            builder.Configuration["urls"] = SettingsResolver.DefaultUrl;
        }

        builder.WebHost.UseUrls(builder.Configuration["urls"]!);

        var errors = new List<string>();
        var settings = SettingsResolver.Resolve(builder.Configuration, errors, options.Time);
        if (settings is null)
        {
            return new BrokerBuildResult(null, null, errors, []);
        }

        SigningKeyRing keys;
        try
        {
            keys = SigningKeyRing.FromSettings(settings, options.Time ?? TimeProvider.System);
        }
        catch (Exception e) when (e is InvalidOperationException or CryptographicException or ArgumentException)
        {
            return new BrokerBuildResult(null, settings, [$"Signing: {e.Message}"], settings.Warnings);
        }

        var rules = new RuleStore(settings);
        var load = rules.Load();
        var warnings = settings.Warnings.Concat(load.Diagnostics.Where(d => d.Severity == RuleSeverity.Warning).Select(d => d.ToString())).ToList();
        if (load.HasErrors)
        {
            return new BrokerBuildResult(null, settings, load.Diagnostics.Where(d => d.Severity == RuleSeverity.Error).Select(d => d.ToString()).ToList(), warnings);
        }

        // The application log: one escaped line per entry (SafeConsoleFormatter). With the audit log on stdout it goes
        // to stderr, so that stdout carries audit events only and the two streams can be shipped separately.
        builder.Logging.ClearProviders();
        builder.Logging.AddConsole(o =>
        {
            o.FormatterName = SafeConsoleFormatter.FormatterName;
            o.LogToStandardErrorThreshold = settings.Audit.Sink == "stdout" ? LogLevel.Trace : LogLevel.None;
        });
        builder.Logging.AddConsoleFormatter<SafeConsoleFormatter, Microsoft.Extensions.Logging.Console.ConsoleFormatterOptions>();
        builder.Logging.SetMinimumLevel(options.MinimumLogLevel);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);

        // While this category is enabled at any level, ASP.NET Core creates an Activity (and W3C ids) for every
        // request even when nothing collects traces; it only logs request start and finish, at Information. With
        // OTLP tracing on, the ASP.NET Core activity source has a listener and the activity is created as before.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        options.ConfigureLogging?.Invoke(builder.Logging);
        var time = options.Time ?? TimeProvider.System;
        var tls = settings.Tls.CertificatePath is { } certificatePath ? new TlsCertificate(certificatePath, settings.Tls.KeyPath!, time) : null;

        // The slim builder leaves out Kestrel's https configuration; add it so that Kestrel:Endpoints with certificates work too.
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = settings.Limits.MaxRequestBodyBytes;
            k.Limits.MaxRequestHeadersTotalSize = 32 * 1024;
            TlsCertificate.Configure(k, tls);
        });

        var services = builder.Services;
        services.AddSingleton(time);
        services.AddSingleton(settings);
        services.AddSingleton(keys);
        services.AddSingleton(rules);
        services.AddSingleton(_ => ProviderRegistry.CreateHttpClient());
        services.AddSingleton<BrokerMetrics>();
        services.AddSingleton(sp => new ProviderRegistry(settings, sp.GetRequiredService<HttpClient>(), time, sp.GetRequiredService<BrokerMetrics>()));
        services.AddSingleton<IStateStore>(sp =>
        {
            // Connecting does not fail when Redis is down: the store fails closed (503) and reconnects by itself.
            IStateStore store = settings.StateStore == "redis"
                ? RedisStateStore.ConnectAsync(settings.State.Redis, time, sp.GetRequiredService<ILoggerFactory>().CreateLogger("TokenBroker.State.Redis")).GetAwaiter().GetResult()
                : new InMemoryStateStore(time);
            store = options.WrapStateStore?.Invoke(store) ?? store;
            return new InstrumentedStateStore(store, sp.GetRequiredService<BrokerMetrics>());
        });

        services.AddSingleton<BlockCache>();
        services.AddHostedService(sp => sp.GetRequiredService<BlockCache>());
        services.AddSingleton<KeyRotationSync>();
        services.AddHostedService(sp => sp.GetRequiredService<KeyRotationSync>());
        services.AddSingleton(new AdminCredentials(new CredentialSet("admin", settings.AdminCredentials)));
        services.AddSingleton(new IntrospectionCredentials(new CredentialSet("introspection", settings.IntrospectionCredentials)));
        services.AddSingleton<IssuedTokenVerifier>();
        services.AddSingleton<AdminContext>();
        services.AddHostedService<ProviderWarmUp>();
        services.AddSingleton<RuleReloader>();
        services.AddHostedService<RuleWatchService>();
        services.AddSingleton<SubjectTokenValidator>();
        services.AddSingleton<BrokerTokenValidator>();
        services.AddSingleton<ExchangeRequestReader>();
        services.AddSingleton<RepositoryRateLimiter>();
        services.AddSingleton<ExchangeHandler>();
        services.AddClientRateLimits(settings, time);
        services.Configure<HostOptions>(o => o.ShutdownTimeout = settings.Hosting.ShutdownTimeout);
        services.AddSingleton<GracefulShutdown>();
        services.AddHostedService(sp => sp.GetRequiredService<GracefulShutdown>());
        services.AddSingleton<DiscoveryDocument>();
        if (options.AuditSink is { } testSink)
        {
            services.AddSingleton<IAuditSink>(sp => new AuditDispatcher(testSink, sp.GetRequiredService<BrokerMetrics>()));
        }
        else
        {
            // Created by the container so that host shutdown disposes it, which drains the buffer to the sink.
            services.AddSingleton(sp => new AuditLogWriter(settings.Audit, sp.GetRequiredService<BrokerMetrics>(), sp.GetRequiredService<ILogger<AuditLogWriter>>()));
            services.AddSingleton<IAuditSink>(sp => new AuditDispatcher(sp.GetRequiredService<AuditLogWriter>(), sp.GetRequiredService<BrokerMetrics>()));
        }

        if (settings.Telemetry.OtlpEndpoint is { Length: > 0 })
        {
            services.AddSingleton(_ => OtlpTelemetry.Start(settings.Telemetry));
        }

        var app = builder.Build();
        try
        {
            // Open the audit sink now: a file that cannot be opened is a start-up error, not a 500 on every request.
            app.Services.GetRequiredService<IAuditSink>();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            ((IDisposable)app).Dispose();
            return new BrokerBuildResult(null, settings, [$"Audit:Path '{settings.Audit.Path}' cannot be opened for writing: {e.Message}"], warnings);
        }

        keys.UseLogging(app.Services.GetRequiredService<ILoggerFactory>());
        keys.UseMetrics(app.Services.GetRequiredService<BrokerMetrics>());
        app.Services.GetService<OtlpTelemetry>();
        if (tls is not null)
        {
            tls.Logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("TokenBroker.Tls");
        }

        // The client address first (only configured proxies may restate it): rate limits and audit events use it.
        app.UseTrustedProxies(settings.Proxy);
        if (settings.PathBase.Length > 0)
        {
            app.UsePathBase(settings.PathBase);
        }

        app.Use((http, next) =>
        {
            // A short random id that the response, the audit event and the logs share.
            http.TraceIdentifier = "req_" + RandomIds.NewBase64Url(9);
            http.Response.Headers["X-Request-Id"] = http.TraceIdentifier;
            return next(http);
        });
        app.UseSecurityHeaders(settings);
        app.UseRouting();
        app.UseRateLimiter();
        app.MapTokenEndpoint();
        app.MapDiscoveryEndpoints();
        app.MapHealthEndpoints();
        app.MapRevocationEndpoints();
        app.MapAdminEndpoints();
        app.MapAdminKeyEndpoints();
        return new BrokerBuildResult(app, settings, [], warnings);
    }

    /// <summary>
    /// The settings <c>serve</c> would run with, for the offline CLI verbs (<c>rules</c>): the <c>--config</c> file
    /// (when given) and <c>TokenBroker__...</c> environment variables, resolved and checked by the same code.
    /// </summary>
    internal static ResolvedSettings? ResolveSettings(string? configFile, List<string> errors) =>
        ResolveSettings(new BrokerAppOptions { ConfigFile = configFile }, errors);

    /// <summary>
    /// Resolves the configuration as <c>serve</c> would (file, then environment and arguments, then overrides), without
    /// building a host: for the <c>keys</c> commands.
    /// </summary>
    public static ResolvedSettings? ResolveSettings(BrokerAppOptions options, List<string> errors)
    {
        var configuration = new ConfigurationManager();
        configuration.AddEnvironmentVariables();
        configuration.AddCommandLine(options.Args);
        if (AddConfigurationSources(configuration, options) is { } configError)
        {
            errors.Add(configError);
            return null;
        }

        if (string.IsNullOrEmpty(configuration["urls"]))
        {
            configuration["urls"] = SettingsResolver.DefaultUrl;
        }

        return SettingsResolver.Resolve(configuration, errors, options.Time);
    }

    /// <summary>Adds the configuration file and overrides; an error message when the file is missing or malformed.</summary>
    private static string? AddConfigurationSources(IConfigurationBuilder configuration, BrokerAppOptions options)
    {
        if (options.ConfigFile is not null)
        {
            if (!File.Exists(options.ConfigFile))
            {
                return $"--config: '{options.ConfigFile}' does not exist";
            }

            // File first, then environment and arguments again so that they keep precedence over the file.
            var full = Path.GetFullPath(options.ConfigFile);
            if (full.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || full.EndsWith(".yml", StringComparison.OrdinalIgnoreCase))
            {
                try
                {
                    configuration.AddInMemoryCollection(YamlConfigurationFile.Read(full));
                }
                catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
                {
                    return $"--config: {e.Message}";
                }
            }
            else
            {
                try
                {
                    configuration.AddJsonFile(full, optional: false, reloadOnChange: false);
                }
                catch (InvalidDataException e)
                {
                    return $"--config: '{full}' is not valid JSON: {e.InnerException?.Message ?? e.Message}";
                }
            }

            configuration.AddEnvironmentVariables();
            configuration.AddCommandLine(options.Args);
        }

        if (options.Overrides is not null)
        {
            configuration.AddInMemoryCollection(options.Overrides);
        }

        return null;
    }

    /// <summary>The addresses Kestrel listens on, once started.</summary>
    public static IReadOnlyList<string> Addresses(WebApplication app) =>
        app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()?.Addresses.ToList() ?? [];
}
