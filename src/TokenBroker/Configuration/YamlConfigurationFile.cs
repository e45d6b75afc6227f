using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace TokenBroker.Configuration;

/// <summary>
/// Reads a YAML configuration file (<c>--config broker.yaml</c>) into configuration keys, the same shape as the
/// JSON file: mappings become <c>A:B</c> paths and sequence items <c>A:0</c>, <c>A:1</c>.
/// </summary>
internal static class YamlConfigurationFile
{
    /// <exception cref="InvalidOperationException">The file is not valid YAML, not a mapping, or uses anchors.</exception>
    public static Dictionary<string, string?> Read(string path)
    {
        var stream = new YamlStream();
        try
        {
            using var reader = File.OpenText(path);
            stream.Load(reader);
        }
        catch (YamlException e)
        {
            throw new InvalidOperationException($"{path}:{e.Start.Line}:{e.Start.Column}: {e.Message}", e);
        }

        var values = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        if (stream.Documents.Count == 0)
        {
            return values;
        }

        if (stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            throw new InvalidOperationException($"{path}: the configuration must be a mapping");
        }

        Flatten(root, null, values, path);
        return values;
    }

    private static void Flatten(YamlNode node, string? prefix, Dictionary<string, string?> values, string path)
    {
        if (!node.Anchor.IsEmpty)
        {
            throw new InvalidOperationException($"{path}:{node.Start.Line}:{node.Start.Column}: anchors and aliases are not supported");
        }

        switch (node)
        {
            case YamlMappingNode map:
                foreach (var (key, value) in map.Children)
                {
                    var name = (key as YamlScalarNode)?.Value;
                    if (string.IsNullOrEmpty(name))
                    {
                        throw new InvalidOperationException($"{path}:{key.Start.Line}:{key.Start.Column}: keys must be non-empty strings");
                    }

                    Flatten(value, prefix is null ? name : prefix + ":" + name, values, path);
                }

                break;
            case YamlSequenceNode seq:
                for (var i = 0; i < seq.Children.Count; i++)
                {
                    Flatten(seq.Children[i], $"{prefix}:{i}", values, path);
                }

                break;
            case YamlScalarNode scalar:
                var isNull = scalar.Style == ScalarStyle.Plain && scalar.Value is "~" or "null" or "";
                values[prefix!] = isNull ? null : scalar.Value;
                break;
        }
    }
}
