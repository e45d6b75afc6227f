using TokenBroker.Rules.Diagnostics;

namespace TokenBroker.Rules.Tests.Support;

internal static class DiagnosticFormatting
{
    /// <summary>The diagnostics as the CLI prints them, for assertion messages.</summary>
    public static string Describe(this IEnumerable<RuleDiagnostic> diagnostics)
    {
        var lines = diagnostics.Select(d => d.ToString()).ToList();
        return lines.Count == 0 ? "(no diagnostics)" : string.Join(Environment.NewLine, lines);
    }

    /// <summary>What the tests compare: id, severity and position, without the wording of the message.</summary>
    public static (string Id, RuleSeverity Severity, SourceLocation Location)[] Positions(this IEnumerable<RuleDiagnostic> diagnostics) =>
        [.. diagnostics.Select(d => (d.Id, d.Severity, d.Location))];

    public static (string Id, RuleSeverity Severity, SourceLocation Location) ErrorAt(string id, int line, int column, string file = RuleFiles.FileName) =>
        (id, RuleSeverity.Error, new SourceLocation(file, line, column));
}
