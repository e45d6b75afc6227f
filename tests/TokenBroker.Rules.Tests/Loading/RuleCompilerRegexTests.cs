using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Tests.Support;
using static TokenBroker.Rules.Tests.Support.DiagnosticFormatting;

namespace TokenBroker.Rules.Tests.Loading;

/// <summary>
/// A regex condition is anchored to the whole value and runs on the linear-time engine. Patterns that cannot keep
/// both promises must be load errors (TB2010) at the pattern, never an exception and never a silently weaker match.
/// </summary>
[TestFixture]
public sealed class RuleCompilerRegexTests
{
    private static string RuleWithRegex(string pattern) => $$"""
        rules:
          - id: r1
            provider: ghes
            when:
              event: { regex: '{{pattern}}' }
            grant:
              audiences: [a]
              stage: deploy
              subject: s
        """;

    private static IEnumerable<TestCaseData> PatternsTheLinearEngineCannotRun()
    {
        yield return new TestCaseData("(?=main)main").SetArgDisplayNames("lookahead");
        yield return new TestCaseData("(?<=x)main").SetArgDisplayNames("lookbehind");
        yield return new TestCaseData("(?>main)").SetArgDisplayNames("atomic group");
        yield return new TestCaseData("(?<m>a)\\k<m>").SetArgDisplayNames("backreference");
        yield return new TestCaseData("(?(a)a|b)").SetArgDisplayNames("conditional");
    }

    [TestCaseSource(nameof(PatternsTheLinearEngineCannotRun))]
    public void Compile_WithRegexTheLinearEngineCannotRun_ReportsTB2010InsteadOfThrowing(string pattern)
    {
        var result = RuleFiles.Compile(RuleWithRegex(pattern));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Diagnostics.Positions(), Is.EqualTo(new[] { ErrorAt(RuleErrors.InvalidRegex, 5, 23) }), result.Diagnostics.Describe);
            Assert.That(result.RuleSet, Is.Null);
        }
    }

    private static IEnumerable<TestCaseData> PatternsThatEscapeTheAnchors()
    {
        // Wrapped as \A(?:pattern)\z these become \A(?:main)|(?:x)\z: the first branch is no longer anchored at the end.
        yield return new TestCaseData("main)|(?:x").SetArgDisplayNames("closes the anchoring group");
        yield return new TestCaseData("x)|(main").SetArgDisplayNames("closes the group and opens another");
    }

    [TestCaseSource(nameof(PatternsThatEscapeTheAnchors))]
    public void Compile_WithRegexThatIsOnlyValidOnceWrapped_ReportsTB2010(string pattern)
    {
        var result = RuleFiles.Compile(RuleWithRegex(pattern));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Diagnostics.Positions(), Is.EqualTo(new[] { ErrorAt(RuleErrors.InvalidRegex, 5, 23) }), result.Diagnostics.Describe);
            Assert.That(result.RuleSet, Is.Null);
        }
    }

    [Test]
    public void Compile_WithRegexOfInlineOptions_IsAccepted()
    {
        var rules = RuleFiles.CompileValid(RuleWithRegex("(?i)main|dev"));

        Assert.That(rules.Rules.Single().Conditions.Single().Condition.Describe(), Is.EqualTo("regex \"(?i)main|dev\""));
    }
}
