using System.Collections.Frozen;
using System.Text.RegularExpressions;

namespace TokenBroker.Rules.Model;

/// <summary>
/// A compiled test on one claim value. All comparisons are ordinal. A condition never sees an absent claim:
/// the rule treats absence as a failed condition before asking.
/// </summary>
public abstract class Condition
{
    /// <summary>True when the value satisfies the condition.</summary>
    public abstract bool Matches(string value);

    /// <summary>How the condition reads in an explanation, e.g. <c>in [push, workflow_dispatch]</c>.</summary>
    public abstract string Describe();

    /// <summary>The literal values this condition admits, when it is a finite set (exact and in); otherwise null.</summary>
    public virtual IReadOnlyCollection<string>? FiniteValues => null;
}

/// <summary>The default operator: the value equals a literal.</summary>
public sealed class ExactCondition(string expected) : Condition
{
    public string Expected { get; } = expected;

    public override bool Matches(string value) => string.Equals(value, Expected, StringComparison.Ordinal);

    public override string Describe() => $"== \"{Expected}\"";

    public override IReadOnlyCollection<string>? FiniteValues => [Expected];
}

/// <summary>The value equals one of several literals.</summary>
public sealed class InCondition(IEnumerable<string> values) : Condition
{
    private readonly FrozenSet<string> _values = values.ToFrozenSet(StringComparer.Ordinal);

    public override bool Matches(string value) => _values.Contains(value);

    public override string Describe() => $"in [{string.Join(", ", _values.Order(StringComparer.Ordinal))}]";

    public override IReadOnlyCollection<string>? FiniteValues => _values;
}

/// <summary>
/// A glob: <c>*</c> matches any run of characters except <c>/</c>, <c>?</c> one character except <c>/</c>;
/// everything else is literal. Matching is linear in practice and never backtracks across segments.
/// </summary>
public sealed class GlobCondition(string pattern) : Condition
{
    public string Pattern { get; } = pattern;

    public override bool Matches(string value) => GlobMatcher.IsMatch(Pattern, value);

    public override string Describe() => $"glob \"{Pattern}\"";
}

/// <summary>A regular expression anchored to the whole value, run by the non-backtracking engine.</summary>
public sealed class RegexCondition(string pattern, Regex regex) : Condition
{
    /// <summary>
    /// A safety net only: the engine is linear in the value's length, but building its automaton on first use can
    /// take tens of milliseconds on a loaded machine, so the limit is generous.
    /// </summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(1);

    public string Pattern { get; } = pattern;

    public override bool Matches(string value)
    {
        try
        {
            return regex.IsMatch(value);
        }
        catch (RegexMatchTimeoutException)
        {
            // Fail closed: a value the engine cannot decide in time does not match.
            return false;
        }
    }

    public override string Describe() => $"regex \"{Pattern}\"";
}

/// <summary>Negation. Note that an absent claim still fails: <c>not</c> never turns absence into a match.</summary>
public sealed class NotCondition(Condition inner) : Condition
{
    public Condition Inner { get; } = inner;

    public override bool Matches(string value) => !Inner.Matches(value);

    public override string Describe() => $"not ({Inner.Describe()})";
}

internal static class GlobMatcher
{
    // Classic wildcard matching with a single backtrack point; '*' and '?' never consume '/'.
    // Because '*' cannot cross '/', the backtrack point is dropped at every '/', which keeps the work bounded.
    public static bool IsMatch(string pattern, string value)
    {
        int p = 0, v = 0, starP = -1, starV = -1;
        while (v < value.Length)
        {
            if (p < pattern.Length && pattern[p] == '*')
            {
                starP = p++;
                starV = v;
            }
            else if (p < pattern.Length && (pattern[p] == value[v] && pattern[p] != '*' || pattern[p] == '?' && value[v] != '/'))
            {
                p++;
                v++;
            }
            else if (starP >= 0 && value[starV] != '/')
            {
                p = starP + 1;
                v = ++starV;
            }
            else
            {
                return false;
            }
        }

        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }

        return p == pattern.Length;
    }
}
