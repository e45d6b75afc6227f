using System.Text.RegularExpressions;
using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Providers;
using TokenBroker.Signing;

namespace TokenBroker.Configuration;

/// <summary>
/// Binds and checks the whole configuration in one pass so that start-up reports every problem at once.
/// </summary>
public static partial class SettingsResolver
{
    public const string GitHubIssuer = "https://token.actions.githubusercontent.com";
    public const string GitLabComIssuer = "https://gitlab.com";
    public const string DefaultUrl = "http://127.0.0.1:8080";

    internal static readonly string[] DefaultAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"];
    internal static readonly string[] SigningAlgorithms = ["ES256", "ES384", "RS256", "PS256"];

    /// <summary>
    /// Binds <see cref="BrokerOptions"/> strictly. Every unknown key is reported (a typo must not fall back to a
    /// default silently), and each subsystem is bound on its own so that a bad value in one does not hide problems
    /// in another.
    /// </summary>
    public static BrokerOptions Bind(IConfiguration configuration, List<string> errors)
    {
        var options = new BrokerOptions();
        var section = configuration.GetSection(BrokerOptions.SectionName);
        FindUnknownKeys(section, typeof(BrokerOptions), BrokerOptions.SectionName, errors);
        foreach (var property in typeof(BrokerOptions).GetProperties())
        {
            var child = section.GetSection(property.Name);
            if (!child.Exists())
            {
                continue;
            }

            try
            {
                if (property.PropertyType == typeof(string))
                {
                    property.SetValue(options, child.Value);
                }
                else
                {
                    child.Bind(property.GetValue(options));
                }
            }
            catch (InvalidOperationException e)
            {
                errors.Add($"{child.Path}: {e.Message}{(e.InnerException is null ? "" : " " + e.InnerException.Message)}");
            }
        }

        return options;
    }

    private static void FindUnknownKeys(IConfigurationSection section, Type type, string path, List<string> errors)
    {
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        if (underlying == typeof(string) || underlying.IsPrimitive || underlying.IsEnum || underlying == typeof(TimeSpan) || underlying == typeof(DateTimeOffset))
        {
            foreach (var child in section.GetChildren())
            {
                errors.Add($"{child.Path}: '{path}' is a value, not a section");
            }

            return;
        }

        if (underlying.IsGenericType && underlying.GetGenericTypeDefinition() == typeof(Dictionary<,>))
        {
            var valueType = underlying.GetGenericArguments()[1];
            foreach (var child in section.GetChildren())
            {
                FindUnknownKeys(child, valueType, child.Path, errors);
            }

            return;
        }

        if (underlying.IsGenericType && underlying.GetGenericTypeDefinition() == typeof(List<>))
        {
            var itemType = underlying.GetGenericArguments()[0];
            foreach (var child in section.GetChildren())
            {
                if (!int.TryParse(child.Key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _))
                {
                    errors.Add($"{child.Path}: '{path}' is a list; use {path}:0, {path}:1, ...");
                    continue;
                }

                FindUnknownKeys(child, itemType, child.Path, errors);
            }

            return;
        }

        foreach (var child in section.GetChildren())
        {
            var property = underlying.GetProperty(child.Key, System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.IgnoreCase);
            if (property is null)
            {
                var known = string.Join(", ", underlying.GetProperties().Select(p => p.Name));
                errors.Add($"{child.Path}: unknown setting '{child.Key}' (known: {known})");
                continue;
            }

            FindUnknownKeys(child, property.PropertyType, child.Path, errors);
        }
    }

    /// <summary>Resolves defaults and validates; returns null with <paramref name="errors"/> filled when anything is wrong.</summary>
    public static ResolvedSettings? Resolve(IConfiguration configuration, List<string> errors, TimeProvider? time = null)
    {
        var now = (time ?? TimeProvider.System).GetUtcNow();
        var options = Bind(configuration, errors);
        var warnings = new List<string>();

        var issuer = ResolveIssuer(options.Issuer, configuration["urls"], errors, warnings, out var pathBase);

        var providers = new List<ResolvedProvider>();
        var configured = options.Providers.Count > 0
            ? options.Providers
            : new Dictionary<string, ProviderOptions>(StringComparer.Ordinal)
            {
                ["github"] = new() { Kind = ProviderKind.GitHub, Issuer = GitHubIssuer },
                ["gitlab"] = new() { Kind = ProviderKind.GitLab, Issuer = GitLabComIssuer },
            };
        var issuers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, p) in configured.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var resolved = ResolveProvider(name, p, issuer ?? DefaultUrl, errors, warnings);
            if (resolved is null)
            {
                continue;
            }

            if (issuers.TryGetValue(resolved.Issuer, out var other))
            {
                errors.Add($"Providers:{name}:Issuer: the same issuer is already configured for provider '{other}'");
                continue;
            }

            issuers[resolved.Issuer] = name;
            providers.Add(resolved);
        }

        if (options.Rules.Paths.Count == 0)
        {
            warnings.Add("Rules: no TokenBroker:Rules:Paths set, so the built-in sample rules (config/rules) are in force. Set your own rules before trusting real github.com or gitlab.com tokens.");
        }

        if (options.Rules.MaxTtl <= TimeSpan.Zero || options.Rules.MaxTtl > TimeSpan.FromHours(24))
        {
            errors.Add("Rules:MaxTtl must be between 1 second and 24 hours");
        }

        if (options.Rules.ReloadDebounce < TimeSpan.FromMilliseconds(50) || options.Rules.ReloadDebounce > TimeSpan.FromMinutes(1))
        {
            errors.Add("Rules:ReloadDebounce must be between 50 milliseconds and 1 minute");
        }

        if (options.Rules.DefaultTtl <= TimeSpan.Zero || options.Rules.DefaultTtl > options.Rules.MaxTtl)
        {
            errors.Add("Rules:DefaultTtl must be positive and at most Rules:MaxTtl");
        }

        var keys = options.Signing.Keys;
        if (keys.Count == 0)
        {
            keys = [new SigningKeyOptions { Source = "generated", Algorithm = "ES256" }];
        }

        for (var i = 0; i < keys.Count; i++)
        {
            var key = keys[i];
            if (Array.IndexOf(SigningAlgorithms, key.Algorithm) < 0)
            {
                errors.Add($"Signing:Keys:{i}:Algorithm '{key.Algorithm}' is not one of {string.Join(", ", SigningAlgorithms)}");
            }

            switch (key.Source)
            {
                case "file":
                    if (string.IsNullOrWhiteSpace(key.Path))
                    {
                        errors.Add($"Signing:Keys:{i}:Path is required for a file key");
                    }
                    else if (!File.Exists(key.Path))
                    {
                        errors.Add($"Signing:Keys:{i}:Path '{key.Path}' does not exist");
                    }

                    break;
                case "pkcs11":
                    CheckPkcs11Key(i, key, errors, warnings);
                    break;
                case "aws-kms":
                    CheckAwsKmsKey(i, key, errors, warnings);
                    break;
                case "generated":
                    warnings.Add($"Signing key {i} is generated in memory at start-up: tokens cannot be verified after a restart and replicas disagree. Development only.");
                    break;
                default:
                    errors.Add($"Signing:Keys:{i}:Source '{key.Source}' must be 'file', 'pkcs11', 'aws-kms' or 'generated'");
                    break;
            }

            if (key.KeyId is { } kid && !KeyIdRegex().IsMatch(kid))
            {
                errors.Add($"Signing:Keys:{i}:KeyId must be 1 to 64 characters of [A-Za-z0-9._-]");
            }
        }

        var signing = options.Signing;
        if (signing.AnnouncementLeadTime < TimeSpan.FromMinutes(2) || signing.AnnouncementLeadTime > TimeSpan.FromDays(30))
        {
            errors.Add("Signing:AnnouncementLeadTime must be between 2 minutes and 30 days");
        }

        var jwksMaxAge = TimeSpan.FromSeconds(Math.Floor(Math.Min(signing.AnnouncementLeadTime.TotalSeconds / 2, TimeSpan.FromDays(1).TotalSeconds)));
        var retention = options.Rules.MaxTtl + jwksMaxAge + options.Exchange.ClockSkew;
        CheckRotationSettings(keys, signing, options.State.Store, now, errors, warnings);
        var keyPlan = new KeyPlan
        {
            Keys = keys,
            Lead = signing.AnnouncementLeadTime,
            Retention = retention,
            RotateEvery = signing.RotateEvery,
            RotateFrom = signing.RotateFrom,
        };
        var timelines = KeySchedule.Compute(keyPlan, [], errors);
        var defaultAlgorithm = signing.DefaultAlgorithm ?? keys[0].Algorithm;
        if (Array.IndexOf(SigningAlgorithms, defaultAlgorithm) < 0)
        {
            errors.Add($"Signing:DefaultAlgorithm '{defaultAlgorithm}' is not one of {string.Join(", ", SigningAlgorithms)}");
        }

        var audienceAlgorithms = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < signing.AudienceAlgorithms.Count; i++)
        {
            var entry = signing.AudienceAlgorithms[i];
            if (string.IsNullOrEmpty(entry.Audience))
            {
                errors.Add($"Signing:AudienceAlgorithms:{i}:Audience is required");
            }
            else if (audienceAlgorithms.ContainsKey(entry.Audience))
            {
                errors.Add($"Signing:AudienceAlgorithms:{i}:Audience '{entry.Audience}' is listed twice");
            }

            if (entry.Algorithm is null || Array.IndexOf(SigningAlgorithms, entry.Algorithm) < 0)
            {
                errors.Add($"Signing:AudienceAlgorithms:{i}:Algorithm '{entry.Algorithm}' is not one of {string.Join(", ", SigningAlgorithms)}");
            }

            if (!string.IsNullOrEmpty(entry.Audience) && entry.Algorithm is not null)
            {
                audienceAlgorithms.TryAdd(entry.Audience, entry.Algorithm);
            }
        }

        if (timelines.All(t => t is not null))
        {
            KeySchedule.CheckCoverage(timelines, audienceAlgorithms.Values.Prepend(defaultAlgorithm), now, errors);
        }

        if (options.Signing.ReopenInterval < TimeSpan.FromMilliseconds(100) || options.Signing.ReopenInterval > TimeSpan.FromMinutes(5))
        {
            errors.Add("Signing:ReopenInterval must be between 100 milliseconds and 5 minutes");
        }

        ResolveState(options.State, errors, warnings);
        var adminCredentials = ResolveCredentials("Admin", options.Admin, errors);
        var introspectionCredentials = ResolveCredentials("Introspection", options.Introspection, errors);

        var l = options.Limits;
        CheckRange(errors, "Limits:MaxRequestBodyBytes", l.MaxRequestBodyBytes, 1024, 1 << 20);
        CheckRange(errors, "Limits:MaxTokenBytes", l.MaxTokenBytes, 512, 64 * 1024);
        CheckRange(errors, "Limits:MaxFormFields", l.MaxFormFields, 4, 256);
        CheckRange(errors, "Limits:MaxParameterLength", l.MaxParameterLength, 64, 16 * 1024);
        CheckRange(errors, "Limits:MaxAudiences", l.MaxAudiences, 1, 100);
        CheckRange(errors, "Limits:MaxClaims", l.MaxClaims, 8, 1000);
        CheckRange(errors, "Limits:MaxJsonDepth", l.MaxJsonDepth, 2, 64);
        if (l.MaxTokenBytes > l.MaxRequestBodyBytes)
        {
            errors.Add("Limits:MaxTokenBytes must not exceed Limits:MaxRequestBodyBytes");
        }

        if (options.Exchange.ClockSkew < TimeSpan.Zero || options.Exchange.ClockSkew > TimeSpan.FromSeconds(60))
        {
            errors.Add("Exchange:ClockSkew must be between 0 and 60 seconds");
        }

        CheckRange(errors, "Exchange:RetryAfterSeconds", options.Exchange.RetryAfterSeconds, 1, 3600);
        ResolveAudit(options.Audit, errors);
        ResolveTelemetry(options.Telemetry, errors);

        ResolveRateLimits(options.RateLimits, errors, warnings);
        var proxy = ResolveProxy(options.Proxy, errors);
        ResolveTls(options.Tls, configuration["urls"], errors);
        CheckSpan(errors, "Hosting:ShutdownTimeout", options.Hosting.ShutdownTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(10));
        CheckSpan(errors, "Hosting:DrainDelay", options.Hosting.DrainDelay, TimeSpan.Zero, TimeSpan.FromMinutes(1));
        if (options.Hosting.DrainDelay >= options.Hosting.ShutdownTimeout)
        {
            errors.Add("Hosting:DrainDelay must be less than Hosting:ShutdownTimeout (the drain counts against it)");
        }

        if (errors.Count > 0 || issuer is null)
        {
            return null;
        }

        return new ResolvedSettings
        {
            Issuer = issuer,
            PathBase = pathBase,
            Providers = providers,
            RuleLoad = new RuleLoadOptions { MaxTtl = options.Rules.MaxTtl, DefaultTtl = options.Rules.DefaultTtl },
            RulePaths = options.Rules.Paths,
            RulesWatch = options.Rules.Watch,
            RulesReloadDebounce = options.Rules.ReloadDebounce,
            SigningKeys = keys,
            SigningReopenInterval = options.Signing.ReopenInterval,
            KeyTimelines = timelines,
            KeyPlan = keyPlan,
            DefaultAlgorithm = defaultAlgorithm,
            AudienceAlgorithms = audienceAlgorithms,
            JwksMaxAge = jwksMaxAge,
            StateStore = options.State.Store,
            State = options.State,
            AdminCredentials = adminCredentials,
            IntrospectionCredentials = introspectionCredentials,
            Limits = options.Limits,
            Exchange = options.Exchange,
            Audit = options.Audit,
            Telemetry = options.Telemetry,
            RateLimits = options.RateLimits,
            Proxy = proxy,
            Tls = options.Tls,
            Hosting = options.Hosting,
            Warnings = warnings,
        };
    }

    private static void ResolveRateLimits(RateLimitOptions limits, List<string> errors, List<string> warnings)
    {
        if (!limits.Enabled)
        {
            warnings.Add("RateLimits:Enabled is false: no client or repository is rate limited. Benchmarks only.");
        }

        foreach (var (name, bucket) in new[] { ("Token", limits.Token), ("Revoke", limits.Revoke), ("Introspect", limits.Introspect), ("Admin", limits.Admin), ("Repository", limits.Repository) })
        {
            CheckRange(errors, $"RateLimits:{name}:Burst", bucket.Burst, 0, 1_000_000);
            if (bucket.Burst > 0)
            {
                CheckRange(errors, $"RateLimits:{name}:PerMinute", bucket.PerMinute, 1, 6_000_000);
            }
        }

        CheckRange(errors, "RateLimits:MaxTrackedKeys", limits.MaxTrackedKeys, 100, 1_000_000);
        CheckRange(errors, "RateLimits:IPv6PrefixLength", limits.IPv6PrefixLength, 48, 128);
    }

    private static ResolvedProxy ResolveProxy(ProxyOptions proxy, List<string> errors)
    {
        var addresses = new List<System.Net.IPAddress>();
        for (var i = 0; i < proxy.KnownProxies.Count; i++)
        {
            if (System.Net.IPAddress.TryParse(proxy.KnownProxies[i], out var address) && !proxy.KnownProxies[i].Contains('/', StringComparison.Ordinal))
            {
                addresses.Add(address);
            }
            else
            {
                errors.Add($"Proxy:KnownProxies:{i} '{proxy.KnownProxies[i]}' is not an IP address (use KnownNetworks for CIDR ranges)");
            }
        }

        var networks = new List<System.Net.IPNetwork>();
        for (var i = 0; i < proxy.KnownNetworks.Count; i++)
        {
            // Exact CIDR: the address must be the network's first address, so '10.1.2.3/8' is a typo, not 10.0.0.0/8.
            var text = proxy.KnownNetworks[i];
            if (System.Net.IPNetwork.TryParse(text, out var network)
                && System.Net.IPAddress.TryParse(text.Split('/')[0], out var written) && written.Equals(network.BaseAddress))
            {
                if (network.PrefixLength == 0)
                {
                    errors.Add($"Proxy:KnownNetworks:{i} '{proxy.KnownNetworks[i]}' trusts every address; list the proxies' own networks");
                }
                else
                {
                    networks.Add(network);
                }
            }
            else
            {
                errors.Add($"Proxy:KnownNetworks:{i} '{proxy.KnownNetworks[i]}' is not a network in CIDR notation (e.g. 10.0.0.0/8) with no host bits set");
            }
        }

        CheckRange(errors, "Proxy:ForwardLimit", proxy.ForwardLimit, 1, 10);
        return new ResolvedProxy(addresses, networks, proxy.ForwardLimit);
    }

    private static void ResolveTls(TlsOptions tls, string? urls, List<string> errors)
    {
        CheckRange(errors, "Tls:HstsMaxAgeSeconds", tls.HstsMaxAgeSeconds, 0, 63_072_000);
        var hasCertificate = !string.IsNullOrEmpty(tls.CertificatePath);
        if (hasCertificate != !string.IsNullOrEmpty(tls.KeyPath))
        {
            errors.Add("Tls: set both CertificatePath and KeyPath, or neither");
            return;
        }

        var https = (urls ?? string.Empty).Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Any(u => u.StartsWith("https://", StringComparison.OrdinalIgnoreCase));
        if (!hasCertificate)
        {
            return;
        }

        if (!https)
        {
            errors.Add("Tls:CertificatePath is set but no listen URL (urls) is https://");
        }

        try
        {
            using var certificate = Hosting.TlsCertificate.Load(tls.CertificatePath!, tls.KeyPath!);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            errors.Add($"Tls: the certificate '{tls.CertificatePath}' with key '{tls.KeyPath}' cannot be loaded: {e.Message}");
        }
    }

    private static void CheckAwsKmsKey(int i, SigningKeyOptions key, List<string> errors, List<string> warnings)
    {
        var prefix = $"Signing:Keys:{i}";
        if (string.IsNullOrWhiteSpace(key.KmsKeyId) || key.KmsKeyId.Length > 2048 || key.KmsKeyId.Any(char.IsWhiteSpace))
        {
            errors.Add($"{prefix}:KmsKeyId is required for an aws-kms key: a key id, key ARN, alias/name or alias ARN");
        }

        if (string.IsNullOrWhiteSpace(key.Region) || !AwsRegionRegex().IsMatch(key.Region))
        {
            errors.Add($"{prefix}:Region is required for an aws-kms key, e.g. eu-west-1");
        }

        if (key.ServiceUrl is { } url)
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var parsed) || !string.IsNullOrEmpty(parsed.UserInfo) ||
                !(parsed.Scheme == Uri.UriSchemeHttps || (parsed.Scheme == Uri.UriSchemeHttp && parsed.IsLoopback)))
            {
                errors.Add($"{prefix}:ServiceUrl must be an absolute https URL without credentials (http only for a loopback address)");
            }
        }

        if (key.Path is not null || key.Uri is not null || key.PinFile is not null || key.PinEnvironmentVariable is not null)
        {
            errors.Add($"{prefix}: Path, Uri, PinFile and PinEnvironmentVariable do not apply to an aws-kms key; credentials come from the standard AWS chain");
        }

        warnings.Add($"{prefix} is an aws-kms key: KMS signing is experimental");
    }

    [GeneratedRegex("^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", RegexOptions.CultureInvariant)]
    private static partial Regex AwsRegionRegex();

    /// <summary>Standby keys and Signing:RotateEvery: what each needs and what they exclude.</summary>
    private static void CheckRotationSettings(List<SigningKeyOptions> keys, SigningOptions signing, string store, DateTimeOffset now, List<string> errors, List<string> warnings)
    {
        var shared = store == "redis";
        for (var i = 0; i < keys.Count; i++)
        {
            var key = keys[i];
            if (!key.Standby)
            {
                continue;
            }

            if (key.KeyId is null)
            {
                errors.Add($"Signing:Keys:{i}: a Standby key needs a KeyId, which POST /admin/keys/rotate names");
            }

            if (key.ActivateAt is not null || key.RetireAt is not null || key.RemoveAt is not null)
            {
                errors.Add($"Signing:Keys:{i}: a Standby key has no ActivateAt, RetireAt or RemoveAt; an admin rotation sets its dates");
            }

            if (key.Source == "generated" && shared)
            {
                errors.Add($"Signing:Keys:{i}: a generated key cannot be a Standby key with State:Store redis: every replica would generate a different key under the same kid");
            }
        }

        if (signing.RotateEvery is not { } every)
        {
            if (signing.RotateFrom is not null)
            {
                errors.Add("Signing:RotateFrom is only allowed with Signing:RotateEvery");
            }

            return;
        }

        if (every < TimeSpan.FromHours(1) || every > TimeSpan.FromDays(3650))
        {
            errors.Add("Signing:RotateEvery must be between 1 hour and 3650 days");
        }
        else if (every <= signing.AnnouncementLeadTime)
        {
            errors.Add($"Signing:RotateEvery ({every}) must be longer than Signing:AnnouncementLeadTime ({signing.AnnouncementLeadTime}), or the next key would be announced before the current one signs");
        }

        if (signing.RotateFrom is null)
        {
            errors.Add("Signing:RotateFrom is required with Signing:RotateEvery: it anchors the schedule so that every replica derives the same dates");
        }

        for (var i = 0; i < keys.Count; i++)
        {
            var key = keys[i];
            if (key.Standby)
            {
                continue;
            }

            if (key.ActivateAt is not null || key.RetireAt is not null)
            {
                errors.Add($"Signing:Keys:{i}: ActivateAt and RetireAt cannot be combined with Signing:RotateEvery, which sets every non-standby key's dates; remove them or remove RotateEvery");
            }

            if (key.Source == "generated" && shared)
            {
                errors.Add($"Signing:Keys:{i}: Signing:RotateEvery cannot use generated keys with State:Store redis: every replica would rotate through different keys");
            }
        }

        if (signing.RotateFrom is not { } from || every < TimeSpan.FromHours(1))
        {
            return;
        }

        foreach (var pool in keys.Where(k => !k.Standby).GroupBy(k => k.Algorithm, StringComparer.Ordinal))
        {
            var count = pool.Count();
            var last = from + (every * Math.Max(0, count - 1));
            var endsAt = last + every;
            if (count == 1)
            {
                warnings.Add($"Signing:RotateEvery: only one {pool.Key} key is configured, so it never rotates; add keys to the pool");
            }
            else if (endsAt <= now + (every * 2))
            {
                warnings.Add($"Signing:RotateEvery: the {pool.Key} pool runs out at {endsAt:O} (its last key activates at {last:O} and then keeps signing); append keys, generated in the HSM ceremony, before then");
            }
        }
    }

    private static void ResolveState(StateOptions state, List<string> errors, List<string> warnings)
    {
        switch (state.Store)
        {
            case "memory":
                warnings.Add("State is kept in memory: replay protection, revocation and blocks hold for this process only and are lost on restart. Development only.");
                break;
            case "redis":
                var redis = state.Redis;
                if (redis.Endpoints.Count == 0 && redis.Sentinels.Count == 0)
                {
                    errors.Add("State:Redis:Endpoints: at least one host:port is required for the redis store (or State:Redis:Sentinels with State:Redis:ServiceName)");
                }

                if (redis.Endpoints.Count > 0 && redis.Sentinels.Count > 0)
                {
                    errors.Add("State:Redis:Endpoints and State:Redis:Sentinels exclude each other: list the Sentinels only (the master is found through them), or the data nodes only");
                }

                CheckRedisEndpoints(errors, "State:Redis:Endpoints", redis.Endpoints, 6379);
                CheckRedisEndpoints(errors, "State:Redis:Sentinels", redis.Sentinels, TokenBroker.State.Redis.RedisStateStore.DefaultSentinelPort);
                if (redis.Sentinels.Count > 0)
                {
                    if (string.IsNullOrEmpty(redis.ServiceName))
                    {
                        errors.Add("State:Redis:ServiceName is required with State:Redis:Sentinels (the name in 'sentinel monitor NAME ...')");
                    }
                    else if (!ServiceNameRegex().IsMatch(redis.ServiceName))
                    {
                        errors.Add("State:Redis:ServiceName must be 1 to 64 characters of [A-Za-z0-9._-]");
                    }

                    CheckSpan(errors, "State:Redis:MasterCheckInterval", redis.MasterCheckInterval, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(60));
                }
                else
                {
                    foreach (var (name, set) in new[] { ("ServiceName", redis.ServiceName is not null), ("SentinelPassword", redis.SentinelPassword is not null), ("SentinelSsl", redis.SentinelSsl is not null) })
                    {
                        if (set)
                        {
                            errors.Add($"State:Redis:{name} applies only with State:Redis:Sentinels");
                        }
                    }
                }

                if (redis is { Ssl: false, SentinelSsl: not true })
                {
                    foreach (var (name, set) in new[] { ("CaCertificateFile", redis.CaCertificateFile is not null), ("ClientCertificateFile", redis.ClientCertificateFile is not null), ("ClientKeyFile", redis.ClientKeyFile is not null) })
                    {
                        if (set)
                        {
                            errors.Add($"State:Redis:{name} applies only with TLS: set State:Redis:Ssl (or State:Redis:SentinelSsl) to true");
                        }
                    }
                }

                errors.AddRange(TokenBroker.State.Redis.RedisStateStore.TlsFileErrors(redis, "State:Redis:"));
                if (!KeyPrefixRegex().IsMatch(redis.KeyPrefix))
                {
                    errors.Add("State:Redis:KeyPrefix must be 1 to 32 characters of [A-Za-z0-9:_-]");
                }

                CheckSpan(errors, "State:Redis:OperationTimeout", redis.OperationTimeout, TimeSpan.FromMilliseconds(10), TimeSpan.FromSeconds(10));
                CheckSpan(errors, "State:Redis:ConnectTimeout", redis.ConnectTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(30));
                CheckSpan(errors, "State:Redis:BreakDuration", redis.BreakDuration, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(60));
                break;
            default:
                errors.Add($"State:Store '{state.Store}' is not supported; use 'memory' or 'redis'");
                break;
        }

        CheckSpan(errors, "State:BlockSyncInterval", state.BlockSyncInterval, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1));
        if (state.MaxBlockStaleness < 2 * state.BlockSyncInterval || state.MaxBlockStaleness > TimeSpan.FromMinutes(10))
        {
            errors.Add("State:MaxBlockStaleness must be at least 2 x State:BlockSyncInterval and at most 10 minutes");
        }
    }

    private static List<Security.CredentialHash> ResolveCredentials(string scope, CredentialOptions options, List<string> errors)
    {
        var result = new List<Security.CredentialHash>();
        var lines = new List<(string Where, string Line)>();
        for (var i = 0; i < options.Credentials.Count; i++)
        {
            lines.Add(($"{scope}:Credentials:{i}", options.Credentials[i] ?? string.Empty));
        }

        if (options.CredentialsFile is { } file)
        {
            try
            {
                var n = 0;
                foreach (var line in File.ReadLines(file))
                {
                    n++;
                    if (line.Trim().Length > 0 && !line.TrimStart().StartsWith('#'))
                    {
                        lines.Add(($"{scope}:CredentialsFile '{file}' line {n}", line));
                    }
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                errors.Add($"{scope}:CredentialsFile '{file}' cannot be read: {e.Message}");
            }
        }

        foreach (var (where, line) in lines)
        {
            if (Security.CredentialHash.Parse(line, out var error) is { } credential)
            {
                if (result.Any(c => c.Name == credential.Name))
                {
                    errors.Add($"{where}: credential name '{credential.Name}' is used twice");
                    continue;
                }

                result.Add(credential);
            }
            else
            {
                errors.Add($"{where}: {error}");
            }
        }

        return result;
    }

    private static void CheckSpan(List<string> errors, string name, TimeSpan value, TimeSpan min, TimeSpan max)
    {
        if (value < min || value > max)
        {
            errors.Add($"{name} must be between {min} and {max}");
        }
    }

    private static void CheckPkcs11Key(int i, SigningKeyOptions key, List<string> errors, List<string> warnings)
    {
        var prefix = $"Signing:Keys:{i}";
        if (!OperatingSystem.IsLinux())
        {
            errors.Add($"{prefix}:Source 'pkcs11' is supported on Linux only (OpenSSL's pkcs11 engine)");
        }

        if (key.Path is not null)
        {
            errors.Add($"{prefix}:Path is for file keys; a pkcs11 key is addressed by Uri");
        }

        if (string.IsNullOrWhiteSpace(key.Uri))
        {
            errors.Add($"{prefix}:Uri is required for a pkcs11 key (an RFC 7512 URI such as pkcs11:token=prod;object=signing-2026)");
        }
        else
        {
            foreach (var problem in Pkcs11UriCheck.Problems(key.Uri))
            {
                errors.Add($"{prefix}:Uri {problem}");
            }
        }

        var hasFile = !string.IsNullOrEmpty(key.PinFile);
        var hasEnv = !string.IsNullOrEmpty(key.PinEnvironmentVariable);
        if (hasFile == hasEnv)
        {
            errors.Add($"{prefix}: set exactly one of PinFile and PinEnvironmentVariable (the PIN never goes into configuration)");
        }
        else if (hasFile && !File.Exists(key.PinFile))
        {
            errors.Add($"{prefix}:PinFile '{key.PinFile}' does not exist");
        }
        else if (hasFile && !OperatingSystem.IsWindows()
            && (File.GetUnixFileMode(key.PinFile!) & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0)
        {
            warnings.Add($"{prefix}:PinFile '{key.PinFile}' is readable or writable by group or others; make it 0400 or 0600 for the broker's user only");
        }
        else if (hasEnv && string.IsNullOrEmpty(Environment.GetEnvironmentVariable(key.PinEnvironmentVariable!)))
        {
            errors.Add($"{prefix}:PinEnvironmentVariable: the environment variable '{key.PinEnvironmentVariable}' is not set or empty");
        }
    }

    private static void ResolveAudit(AuditOptions audit, List<string> errors)
    {
        switch (audit.Sink)
        {
            case "stdout":
                if (!string.IsNullOrEmpty(audit.Path))
                {
                    errors.Add("Audit:Path is only used with Audit:Sink 'file'");
                }

                break;
            case "file":
                if (string.IsNullOrWhiteSpace(audit.Path))
                {
                    errors.Add("Audit:Path is required with Audit:Sink 'file'");
                }
                else if (System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(audit.Path)) is not { } directory || !Directory.Exists(directory))
                {
                    errors.Add($"Audit:Path '{audit.Path}': the directory does not exist");
                }
                else if (Directory.Exists(audit.Path))
                {
                    errors.Add($"Audit:Path '{audit.Path}' is a directory");
                }

                break;
            default:
                errors.Add($"Audit:Sink '{audit.Sink}' must be 'stdout' or 'file'");
                break;
        }

        CheckRange(errors, "Audit:BufferCapacity", audit.BufferCapacity, 100, 1_000_000);
        if (audit.FlushInterval < TimeSpan.Zero || audit.FlushInterval > TimeSpan.FromSeconds(1))
        {
            errors.Add("Audit:FlushInterval must be between 0 and 1 second");
        }
    }

    private static void ResolveTelemetry(TelemetryOptions telemetry, List<string> errors)
    {
        if (telemetry.Protocol is not ("grpc" or "http/protobuf"))
        {
            errors.Add($"Telemetry:Protocol '{telemetry.Protocol}' must be 'grpc' or 'http/protobuf'");
        }

        if (!string.IsNullOrEmpty(telemetry.OtlpEndpoint) &&
            (!Uri.TryCreate(telemetry.OtlpEndpoint, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https") || !string.IsNullOrEmpty(endpoint.Query) || !string.IsNullOrEmpty(endpoint.UserInfo)))
        {
            errors.Add($"Telemetry:OtlpEndpoint '{telemetry.OtlpEndpoint}' must be an absolute http or https URL without query or user info");
        }

        if (string.IsNullOrWhiteSpace(telemetry.ServiceName) || telemetry.ServiceName.Length > 128 || telemetry.ServiceName.Any(char.IsControl))
        {
            errors.Add("Telemetry:ServiceName must be 1 to 128 printable characters");
        }

        if (telemetry.MetricExportInterval < TimeSpan.FromSeconds(1) || telemetry.MetricExportInterval > TimeSpan.FromMinutes(10))
        {
            errors.Add("Telemetry:MetricExportInterval must be between 1 second and 10 minutes");
        }
    }

    private static void CheckRange(List<string> errors, string name, int value, int min, int max)
    {
        if (value < min || value > max)
        {
            errors.Add($"{name} must be between {min} and {max}");
        }
    }

    private static string? ResolveIssuer(string? configured, string? urls, List<string> errors, List<string> warnings, out string pathBase)
    {
        pathBase = string.Empty;
        var value = configured;
        if (string.IsNullOrEmpty(value))
        {
            var first = urls?.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? DefaultUrl;
            if (!Uri.TryCreate(first, UriKind.Absolute, out var listen) || listen.Host is "0.0.0.0" or "*" or "+" or "[::]")
            {
                errors.Add($"Issuer: cannot derive the issuer from the listen URL '{first}'; set TokenBroker:Issuer to the public URL of the broker");
                return null;
            }

            value = listen.GetLeftPart(UriPartial.Authority);
        }

        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http"))
        {
            errors.Add($"Issuer '{value}' must be an absolute https URL");
            return null;
        }

        if (!string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment) || !string.IsNullOrEmpty(uri.UserInfo))
        {
            errors.Add("Issuer must not contain a query, fragment or user info");
            return null;
        }

        if (value.EndsWith('/'))
        {
            errors.Add("Issuer must not end with '/': it must be byte-identical to the iss claim verifiers compare");
            return null;
        }

        if (uri.Scheme == "http")
        {
            if (!uri.IsLoopback)
            {
                errors.Add($"Issuer '{value}' must use https (http is accepted for loopback addresses only)");
                return null;
            }

            warnings.Add($"Issuer '{value}' is a plain-http loopback URL: cloud verifiers will not accept it. Development only.");
        }

        pathBase = uri.AbsolutePath == "/" ? string.Empty : uri.AbsolutePath;
        return value;
    }

    private static ResolvedProvider? ResolveProvider(string name, ProviderOptions p, string brokerIssuer, List<string> errors, List<string> warnings)
    {
        var prefix = $"Providers:{name}";
        var before = errors.Count;
        if (!ProviderNameRegex().IsMatch(name))
        {
            errors.Add($"{prefix}: provider names must match [a-z][a-z0-9_-]{{0,31}}");
        }

        if (p.Kind is null)
        {
            errors.Add($"{prefix}:Kind is required (github, gitlab or oidc)");
        }

        if (string.IsNullOrEmpty(p.Issuer) || !Uri.TryCreate(p.Issuer, UriKind.Absolute, out var issuerUri))
        {
            errors.Add($"{prefix}:Issuer must be an absolute URL");
            return null;
        }

        if (issuerUri.Scheme != "https" && !(p.AllowHttp && issuerUri.Scheme == "http"))
        {
            errors.Add($"{prefix}:Issuer must use https (set AllowHttp only for test issuers)");
        }

        if (p.AllowHttp)
        {
            warnings.Add($"Provider '{name}' allows plain http for discovery and keys. Tests only.");
        }

        var metadata = p.MetadataAddress ?? p.Issuer.TrimEnd('/') + "/.well-known/openid-configuration";
        if (!Uri.TryCreate(metadata, UriKind.Absolute, out var metadataUri) || (metadataUri.Scheme != "https" && !(p.AllowHttp && metadataUri.Scheme == "http")))
        {
            errors.Add($"{prefix}:MetadataAddress must be an absolute https URL");
        }

        var algorithms = p.Algorithms.Count > 0 ? p.Algorithms : [.. DefaultAlgorithms];
        foreach (var alg in algorithms)
        {
            if (Array.IndexOf(DefaultAlgorithms, alg) < 0)
            {
                errors.Add($"{prefix}:Algorithms: '{alg}' is not an allowed asymmetric algorithm ({string.Join(", ", DefaultAlgorithms)})");
            }
        }

        if (p.KeyCacheLifetime < TimeSpan.FromMinutes(5) || p.KeyCacheLifetime > TimeSpan.FromDays(1))
        {
            errors.Add($"{prefix}:KeyCacheLifetime must be between 5 minutes and 1 day");
        }

        if (p.UnknownKeyRefreshInterval < TimeSpan.FromSeconds(1) || p.UnknownKeyRefreshInterval > p.KeyCacheLifetime)
        {
            errors.Add($"{prefix}:UnknownKeyRefreshInterval must be at least 1 second and at most KeyCacheLifetime");
        }

        if (p.FetchTimeout <= TimeSpan.Zero || p.FetchTimeout > TimeSpan.FromSeconds(60))
        {
            errors.Add($"{prefix}:FetchTimeout must be between 0 and 60 seconds");
        }

        CheckRange(errors, $"{prefix}:FetchRetries", p.FetchRetries, 0, 5);
        CheckRange(errors, $"{prefix}:MaxDocumentBytes", p.MaxDocumentBytes, 1024, 4 << 20);

        var kind = p.Kind ?? ProviderKind.Oidc;
        var maxLifetime = p.MaxTokenLifetime ?? kind switch
        {
            ProviderKind.GitHub => TimeSpan.FromMinutes(30),
            ProviderKind.GitLab => TimeSpan.FromHours(24),
            _ => TimeSpan.FromHours(1),
        };
        if (maxLifetime <= TimeSpan.Zero || maxLifetime > TimeSpan.FromDays(7))
        {
            errors.Add($"{prefix}:MaxTokenLifetime must be between 1 second and 7 days");
        }

        if (kind != ProviderKind.Oidc && (p.Claims.Count > 0 || p.ClaimMappings.Count > 0 || p.PullRequestEvents.Count > 0))
        {
            errors.Add($"{prefix}: Claims, ClaimMappings and PullRequestEvents apply to oidc providers only");
        }

        var vocabulary = kind switch
        {
            ProviderKind.GitHub => ClaimVocabulary.GitHub,
            ProviderKind.GitLab => ClaimVocabulary.GitLab,
            _ => ClaimVocabulary.ForOidc(p.Claims, p.ClaimMappings, p.PullRequestEvents),
        };

        var shared = p.SharedIssuer ?? (string.Equals(p.Issuer, GitHubIssuer, StringComparison.Ordinal) || string.Equals(p.Issuer, GitLabComIssuer, StringComparison.Ordinal));
        if (errors.Count > before)
        {
            return null;
        }

        return new ResolvedProvider
        {
            Name = name,
            Kind = kind,
            Issuer = p.Issuer,
            Audience = string.IsNullOrEmpty(p.Audience) ? brokerIssuer : p.Audience,
            MetadataAddress = metadata,
            AllowHttp = p.AllowHttp,
            MaxTokenLifetime = maxLifetime,
            Algorithms = new HashSet<string>(algorithms, StringComparer.Ordinal),
            KeyCacheLifetime = p.KeyCacheLifetime,
            UnknownKeyRefreshInterval = p.UnknownKeyRefreshInterval,
            FetchTimeout = p.FetchTimeout,
            FetchRetries = p.FetchRetries,
            MaxDocumentBytes = p.MaxDocumentBytes,
            Descriptor = new ProviderDescriptor(name, kind, shared, vocabulary),
        };
    }

    [GeneratedRegex(@"\A[a-z][a-z0-9_-]{0,31}\z", RegexOptions.CultureInvariant)]
    private static partial Regex ProviderNameRegex();

    [GeneratedRegex(@"\A[A-Za-z0-9._-]{1,64}\z", RegexOptions.CultureInvariant)]
    private static partial Regex KeyIdRegex();

    [GeneratedRegex(@"\A[A-Za-z0-9:_-]{1,32}\z", RegexOptions.CultureInvariant)]
    private static partial Regex KeyPrefixRegex();

    [GeneratedRegex(@"\A[A-Za-z0-9._-]{1,64}\z", RegexOptions.CultureInvariant)]
    private static partial Regex ServiceNameRegex();

    private static void CheckRedisEndpoints(List<string> errors, string key, List<string> endpoints, int defaultPort)
    {
        for (var i = 0; i < endpoints.Count; i++)
        {
            try
            {
                TokenBroker.State.Redis.RedisStateStore.ParseEndPoint(endpoints[i], defaultPort);
            }
            catch (FormatException)
            {
                errors.Add($"{key}:{i} '{endpoints[i]}' is not host:port");
            }
        }
    }
}
