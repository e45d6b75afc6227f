using TokenBroker.Rules.Diagnostics;
using YamlDotNet.RepresentationModel;

namespace TokenBroker.Rules.Loading;

/// <summary>
/// Strict reading of one YAML mapping's keys, shared by the rule compiler and the policy-test runner so that both
/// report unknown, non-string and missing keys with the same ids (TB2002, TB2003, TB2004) and messages.
/// </summary>
public static class YamlFields
{
    /// <summary>The mapping's values by key; every unknown, non-string or missing key is reported through <paramref name="error"/>.</summary>
    /// <param name="map">The mapping.</param>
    /// <param name="what">How messages name the mapping, e.g. <c>'grant'</c>.</param>
    /// <param name="allowed">The keys it may have.</param>
    /// <param name="required">The keys it must have.</param>
    /// <param name="error">Receives (id, node, message) for each problem.</param>
    public static Dictionary<string, YamlNode> Read(YamlMappingNode map, string what, string[] allowed, string[] required, Action<string, YamlNode, string> error)
    {
        ArgumentNullException.ThrowIfNull(map);
        ArgumentNullException.ThrowIfNull(error);
        var result = new Dictionary<string, YamlNode>(StringComparer.Ordinal);
        foreach (var (keyNode, value) in map.Children)
        {
            if (keyNode is not YamlScalarNode { Value: { } key })
            {
                error(RuleErrors.WrongType, keyNode, $"keys in {what} must be plain strings");
                continue;
            }

            if (Array.IndexOf(allowed, key) < 0)
            {
                error(RuleErrors.UnknownKey, keyNode, $"unknown key '{key}' in {what}; allowed: {string.Join(", ", allowed)}");
                continue;
            }

            result[key] = value;
        }

        foreach (var key in required)
        {
            if (!result.ContainsKey(key))
            {
                error(RuleErrors.MissingKey, map, $"{what} is missing required key '{key}'");
            }
        }

        return result;
    }
}
