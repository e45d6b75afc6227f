using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Providers;

namespace TokenBroker.Configuration;

/// <summary>A provider with every default applied and every value checked.</summary>
public sealed record ResolvedProvider
{
    public required string Name { get; init; }
    public required ProviderKind Kind { get; init; }
    public required string Issuer { get; init; }
    public required string Audience { get; init; }
    public required string MetadataAddress { get; init; }
    public required bool AllowHttp { get; init; }
    public required TimeSpan MaxTokenLifetime { get; init; }
    public required IReadOnlySet<string> Algorithms { get; init; }
    public required TimeSpan KeyCacheLifetime { get; init; }
    public required TimeSpan UnknownKeyRefreshInterval { get; init; }
    public required TimeSpan FetchTimeout { get; init; }
    public required int FetchRetries { get; init; }
    public required int MaxDocumentBytes { get; init; }
    public required ProviderDescriptor Descriptor { get; init; }
}

/// <summary>The broker's configuration after defaults and validation. Immutable.</summary>
public sealed record ResolvedSettings
{
    public required string Issuer { get; init; }
    public required string PathBase { get; init; }
    public required IReadOnlyList<ResolvedProvider> Providers { get; init; }
    public required RuleLoadOptions RuleLoad { get; init; }
    public required IReadOnlyList<string> RulePaths { get; init; }
    public bool RulesWatch { get; init; } = true;
    public TimeSpan RulesReloadDebounce { get; init; } = TimeSpan.FromMilliseconds(500);
    public required IReadOnlyList<SigningKeyOptions> SigningKeys { get; init; }
    public TimeSpan SigningReopenInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Each configured key's dates, in configuration order.</summary>
    public required IReadOnlyList<TokenBroker.Signing.KeyTimeline> KeyTimelines { get; init; }

    /// <summary>What the key schedule is computed from (with the admin rotations from the state store). Null: <see cref="KeyTimelines"/> are fixed.</summary>
    public TokenBroker.Signing.KeyPlan? KeyPlan { get; init; }

    public required string DefaultAlgorithm { get; init; }

    /// <summary>Audience to algorithm (ordinal).</summary>
    public required IReadOnlyDictionary<string, string> AudienceAlgorithms { get; init; }

    /// <summary>The JWKS <c>Cache-Control: max-age</c>: half the announcement lead time, at most 1 day.</summary>
    public required TimeSpan JwksMaxAge { get; init; }
    public required string StateStore { get; init; }
    public required StateOptions State { get; init; }
    public required IReadOnlyList<Security.CredentialHash> AdminCredentials { get; init; }
    public required IReadOnlyList<Security.CredentialHash> IntrospectionCredentials { get; init; }
    public required LimitsOptions Limits { get; init; }
    public required ExchangeOptions Exchange { get; init; }
    public RateLimitOptions RateLimits { get; init; } = new();
    public ResolvedProxy Proxy { get; init; } = new([], [], 1);
    public TlsOptions Tls { get; init; } = new();
    public HostingOptions Hosting { get; init; } = new();

    /// <summary>Audit sink settings (checked).</summary>
    public AuditOptions Audit { get; init; } = new();

    /// <summary>OTLP export settings (checked); <c>OtlpEndpoint</c> null means no export.</summary>
    public TelemetryOptions Telemetry { get; init; } = new();

    /// <summary>Start-up warnings (development defaults, insecure settings).</summary>
    public required IReadOnlyList<string> Warnings { get; init; }

    public IReadOnlyDictionary<string, ProviderDescriptor> ProviderDescriptors =>
        Providers.ToDictionary(p => p.Name, p => p.Descriptor, StringComparer.Ordinal);
}

/// <summary>Trusted reverse proxies, parsed.</summary>
public sealed record ResolvedProxy(IReadOnlyList<System.Net.IPAddress> Addresses, IReadOnlyList<System.Net.IPNetwork> Networks, int ForwardLimit)
{
    public bool Any => Addresses.Count > 0 || Networks.Count > 0;
}
