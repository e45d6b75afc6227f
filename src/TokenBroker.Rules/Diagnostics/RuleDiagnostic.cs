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
    /// <summary>One line telling the author how to fix the finding, when there is a standard fix.</summary>
    public string? Fix { get; init; }

    /// <summary>The rule the finding is about, when it is about one compiled rule (lint findings).</summary>
    public string? Rule { get; init; }

    public override string ToString() =>
        $"{Location}: {(Severity == RuleSeverity.Error ? "error" : "warning")} {Id}: {Message}";
}
