namespace TokenBroker.Rules.Loading;

/// <summary>The text of one rules file and the name diagnostics use for it.</summary>
public sealed record RuleSource(string Name, string Text)
{
    /// <summary>Largest rules file accepted, in characters, checked before parsing.</summary>
    public const int MaxLength = 1 << 20;

    /// <summary>
    /// Reads rule files from paths that are files or directories. Directories contribute their <c>*.yaml</c> and
    /// <c>*.yml</c> files (not recursive), ordered by ordinal file name so that the rule order is deterministic.
    /// </summary>
    public static IReadOnlyList<RuleSource> FromPaths(IEnumerable<string> paths, ICollection<string> errors)
    {
        var sources = new List<RuleSource>();
        foreach (var path in paths)
        {
            if (Directory.Exists(path))
            {
                var files = Directory.EnumerateFiles(path)
                    .Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".yml", StringComparison.Ordinal))
                    .Order(StringComparer.Ordinal)
                    .ToList();
                if (files.Count == 0)
                {
                    errors.Add($"{path}: directory holds no .yaml or .yml file");
                }

                foreach (var file in files)
                {
                    Read(file, sources, errors);
                }
            }
            else
            {
                Read(path, sources, errors);
            }
        }

        return sources;
    }

    private static void Read(string file, List<RuleSource> sources, ICollection<string> errors)
    {
        try
        {
            var info = new FileInfo(file);
            if (!info.Exists)
            {
                errors.Add($"{file}: no such file or directory");
                return;
            }

            if (info.Length > MaxLength)
            {
                errors.Add($"{file}: larger than {MaxLength} bytes");
                return;
            }

            sources.Add(new RuleSource(file, File.ReadAllText(file)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            errors.Add($"{file}: {e.Message}");
        }
    }
}
