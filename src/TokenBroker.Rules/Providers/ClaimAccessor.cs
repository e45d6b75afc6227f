namespace TokenBroker.Rules.Providers;

/// <summary>
/// Reads one (possibly derived) value from a job token's claims. Absent claims read as null, which never matches.
/// </summary>
public abstract class ClaimAccessor
{
    private ClaimAccessor(string source) => Source = source;

    /// <summary>The raw claim this value comes from, for explanations.</summary>
    public string Source { get; }

    /// <summary>True when the value is computed from the claim rather than being the claim itself.</summary>
    public virtual bool IsDerived => false;

    /// <summary>The value, or null when the claim is absent or the derivation does not apply.</summary>
    public abstract string? Read(IJobClaims claims);

    /// <summary>Equal for accessors that read the same value the same way (lint compares conditions by it).</summary>
    internal abstract string Identity { get; }

    /// <summary>True when the value depends on <see cref="Source"/> alone (lets lint reason about raw values).</summary>
    internal virtual bool ReadsOnlySource => true;

    /// <summary>The raw claim value that reads as <paramref name="value"/>, when there is exactly one.</summary>
    internal virtual string? ToSourceValue(string value) => value;

    /// <summary>Reads the value a token whose only claim is <see cref="Source"/> = <paramref name="raw"/> would give.</summary>
    internal string? ReadFromSource(string raw) =>
        Read(new DictionaryJobClaims(new Dictionary<string, string>(StringComparer.Ordinal) { [Source] = raw }));

    public static ClaimAccessor Raw(string claim) => new RawAccessor(claim);

    /// <summary>The claim with a prefix removed; absent when the claim does not start with it.</summary>
    public static ClaimAccessor PrefixStripped(string claim, string prefix) => new PrefixAccessor(claim, prefix);

    /// <summary>The claim, only when another claim has an exact value.</summary>
    public static ClaimAccessor When(string claim, string guardClaim, string guardValue) => new GuardedAccessor(claim, guardClaim, guardValue);

    private sealed class RawAccessor(string claim) : ClaimAccessor(claim)
    {
        internal override string Identity => "raw:" + Source;

        public override string? Read(IJobClaims claims) => claims.Get(Source);
    }

    private sealed class PrefixAccessor(string claim, string prefix) : ClaimAccessor(claim)
    {
        internal override string Identity => $"prefix:{Source}|{prefix}";

        public override bool IsDerived => true;

        internal override string? ToSourceValue(string value) => prefix + value;

        public override string? Read(IJobClaims claims)
        {
            var value = claims.Get(Source);
            return value is not null && value.Length > prefix.Length && value.StartsWith(prefix, StringComparison.Ordinal)
                ? value[prefix.Length..]
                : null;
        }
    }

    internal sealed class GuardedAccessor(string claim, string guardClaim, string guardValue) : ClaimAccessor(claim)
    {
        internal override string Identity => $"when:{Source}|{guardClaim}={guardValue}";

        /// <summary>The claim that must hold <see cref="GuardValue"/>.</summary>
        internal string GuardClaim => guardClaim;

        internal string GuardValue => guardValue;

        public override bool IsDerived => true;

        internal override bool ReadsOnlySource => false;

        internal override string? ToSourceValue(string value) => null;

        public override string? Read(IJobClaims claims) =>
            string.Equals(claims.Get(guardClaim), guardValue, StringComparison.Ordinal) ? claims.Get(Source) : null;
    }
}

/// <summary>The scalar claims of a verified job token. Strings as they are; numbers and booleans as JSON text.</summary>
public interface IJobClaims
{
    /// <summary>The claim's value, or null when absent or not a scalar.</summary>
    string? Get(string name);
}

/// <summary>A dictionary-backed claim set (tests, explain, fixtures).</summary>
public sealed class DictionaryJobClaims(IReadOnlyDictionary<string, string> values) : IJobClaims
{
    public string? Get(string name) => values.TryGetValue(name, out var v) ? v : null;
}
