using System.Collections.Frozen;

namespace TokenBroker.Rules.Model;

/// <summary>An immutable, ordered set of compiled rules, indexed by provider.</summary>
public sealed class RuleSet
{
    private readonly FrozenDictionary<string, TrustRule[]> _byProvider;

    public RuleSet(IReadOnlyList<TrustRule> rules)
    {
        Rules = rules;
        _byProvider = rules.GroupBy(r => r.Provider, StringComparer.Ordinal)
            .ToFrozenDictionary(g => g.Key, g => g.ToArray(), StringComparer.Ordinal);
    }

    /// <summary>All rules in declared order.</summary>
    public IReadOnlyList<TrustRule> Rules { get; }

    /// <summary>The rules for one provider, in declared order.</summary>
    public ReadOnlySpan<TrustRule> ForProvider(string provider) =>
        _byProvider.TryGetValue(provider, out var rules) ? rules : [];
}
