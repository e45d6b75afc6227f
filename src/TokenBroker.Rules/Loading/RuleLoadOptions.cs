namespace TokenBroker.Rules.Loading;

/// <summary>Limits the rule compiler enforces.</summary>
public sealed record RuleLoadOptions
{
    /// <summary>The longest <c>ttl</c> a rule may grant. Default: 1 hour.</summary>
    public TimeSpan MaxTtl { get; init; } = TimeSpan.FromHours(1);

    /// <summary>The lifetime granted when a rule states no <c>ttl</c>. Default: 5 minutes.</summary>
    public TimeSpan DefaultTtl { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>The most rules one load may hold. Default: 10,000.</summary>
    public int MaxRules { get; init; } = 10_000;
}
