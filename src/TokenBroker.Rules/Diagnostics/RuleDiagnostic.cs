namespace TokenBroker.Rules.Diagnostics;

/// <summary>How serious a rule finding is. Errors stop a load; warnings are reported.</summary>
public enum RuleSeverity
{
    Warning,
    Error,
}

/// <summary>A position in a rules file. Lines and columns are 1-based.</summary>
public readonly record struct SourceLocation(string File, int Line, int Column)
{
    public override string ToString() => Line > 0 ? $"{File}:{Line}:{Column}" : File;
}

/// <summary>One finding about a rules file: a stable id, a position and a message for people.</summary>
public sealed record RuleDiagnostic(string Id, RuleSeverity Severity, SourceLocation Location, string Message)
{
    public override string ToString() =>
        $"{Location}: {(Severity == RuleSeverity.Error ? "error" : "warning")} {Id}: {Message}";
}
