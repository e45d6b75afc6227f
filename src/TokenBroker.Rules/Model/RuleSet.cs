using System.Collections.Frozen;
using TokenBroker.Rules.Providers;

namespace TokenBroker.Rules.Model;

/// <summary>
/// An immutable, ordered set of compiled rules, indexed by provider and, within a provider, by the value of the
/// claim most rules pin to a finite set (usually the repository id), so a large rule set is not scanned linearly.
/// </summary>
public sealed class RuleSet
{
    private readonly FrozenDictionary<string, ProviderRules> _byProvider;

    public RuleSet(IReadOnlyList<TrustRule> rules)
    {
        Rules = rules;
        _byProvider = rules.GroupBy(r => r.Provider, StringComparer.Ordinal)
            .ToFrozenDictionary(g => g.Key, g => new ProviderRules(g.ToArray()), StringComparer.Ordinal);
    }

    /// <summary>All rules in declared order.</summary>
    public IReadOnlyList<TrustRule> Rules { get; }

    /// <summary>The rules for one provider, in declared order.</summary>
    public ReadOnlySpan<TrustRule> ForProvider(string provider) =>
        _byProvider.TryGetValue(provider, out var rules) ? rules.All : [];

    /// <summary>
    /// The rules of one provider that can match these claims, in declared order: a superset of the matching rules
    /// (rules pinned to other values of the index claim are skipped, since their condition on it cannot hold).
    /// </summary>
    /// <param name="provider">The provider of the token.</param>
    /// <param name="claims">The token's claims.</param>
    /// <param name="all">Every rule of the provider instead (explanations show all rules).</param>
    public CandidateEnumerator Candidates(string provider, IJobClaims claims, bool all = false) =>
        _byProvider.TryGetValue(provider, out var rules) ? rules.Candidates(claims, all) : default;

    internal sealed class ProviderRules
    {
        private const int IndexThreshold = 8;
        private readonly ClaimAccessor? _indexClaim;
        private readonly FrozenDictionary<string, int[]>? _byValue;
        private readonly int[] _unindexed = [];
        private readonly int[] _all;

        public ProviderRules(TrustRule[] rules)
        {
            All = rules;
            _all = Enumerable.Range(0, rules.Length).ToArray();
            if (rules.Length < IndexThreshold)
            {
                return;
            }

            // The most selective raw claim that rules pin to finite sets: the one with the most distinct values
            // (usually the repository id), then the one the most rules pin. An owner id that every rule pins to the
            // same value would put every rule in one bucket.
            var pins = rules
                .SelectMany(r => r.Conditions.Where(c => !c.Accessor.IsDerived && c.Condition.FiniteValues is not null)
                    .Select(c => (Claim: c.Accessor.Source, Values: c.Condition.FiniteValues!))
                    .DistinctBy(p => p.Claim))
                .GroupBy(p => p.Claim, StringComparer.Ordinal)
                .Select(g => (Claim: g.Key, Rules: g.Count(), Distinct: g.SelectMany(p => p.Values).Distinct(StringComparer.Ordinal).Count()))
                .Where(g => g.Rules >= IndexThreshold && g.Distinct > 1)
                .OrderByDescending(g => g.Distinct)
                .ThenByDescending(g => g.Rules)
                .ThenBy(g => g.Claim, StringComparer.Ordinal)
                .ToList();
            if (pins.Count == 0)
            {
                return;
            }

            var best = pins[0].Claim;
            _indexClaim = ClaimAccessor.Raw(best);
            var buckets = new Dictionary<string, List<int>>(StringComparer.Ordinal);
            var unindexed = new List<int>();
            for (var i = 0; i < rules.Length; i++)
            {
                var pin = rules[i].Conditions.FirstOrDefault(c => !c.Accessor.IsDerived && c.Accessor.Source == best && c.Condition.FiniteValues is not null);
                if (pin is null)
                {
                    unindexed.Add(i);
                    continue;
                }

                foreach (var value in pin.Condition.FiniteValues!)
                {
                    if (!buckets.TryGetValue(value, out var list))
                    {
                        buckets[value] = list = [];
                    }

                    list.Add(i);
                }
            }

            _byValue = buckets.ToFrozenDictionary(kv => kv.Key, kv => kv.Value.ToArray(), StringComparer.Ordinal);
            _unindexed = [.. unindexed];
        }

        public TrustRule[] All { get; }

        public CandidateEnumerator Candidates(IJobClaims claims, bool all)
        {
            if (_indexClaim is null || all)
            {
                return new CandidateEnumerator(All, _all, []);
            }

            var value = _indexClaim.Read(claims);
            var bucket = value is not null && _byValue!.TryGetValue(value, out var b) ? b : [];
            return new CandidateEnumerator(All, bucket, _unindexed);
        }
    }
}

/// <summary>Merges two ascending lists of rule positions, yielding rules in declared order. Allocation-free.</summary>
public struct CandidateEnumerator
{
    private readonly TrustRule[]? _rules;
    private readonly int[] _a;
    private readonly int[] _b;
    private int _i;
    private int _j;

    internal CandidateEnumerator(TrustRule[] rules, int[] a, int[] b)
    {
        _rules = rules;
        _a = a;
        _b = b;
        Current = null!;
    }

    public TrustRule Current { get; private set; }

    public readonly CandidateEnumerator GetEnumerator() => this;

    public bool MoveNext()
    {
        if (_rules is null)
        {
            return false;
        }

        int next;
        if (_i < _a.Length && (_j >= _b.Length || _a[_i] < _b[_j]))
        {
            next = _a[_i++];
        }
        else if (_j < _b.Length)
        {
            next = _b[_j++];
        }
        else
        {
            return false;
        }

        Current = _rules[next];
        return true;
    }
}
