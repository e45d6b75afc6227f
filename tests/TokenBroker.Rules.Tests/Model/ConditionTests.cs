using System.Text;
using System.Text.RegularExpressions;
using TokenBroker.Rules.Model;
using TokenBroker.Rules.Tests.Support;

namespace TokenBroker.Rules.Tests.Model;

/// <summary>The operators, compiled from YAML exactly as rules are. All comparisons are ordinal.</summary>
[TestFixture]
public sealed class ConditionTests
{
    private const string DeployWorkflow = "octo-org/workflows/.github/workflows/deploy.yml@refs/tags/v*";

    private static TestCaseData Row(string name, string condition, string value, bool matches) =>
        new TestCaseData(condition, value, matches).SetArgDisplayNames(name);

    private static IEnumerable<TestCaseData> Exact()
    {
        yield return Row("same text", "main", "main", true);
        yield return Row("other case", "main", "Main", false);
        yield return Row("upper-case literal", "Main", "main", false);
        yield return Row("trailing space", "main", "main ", false);
        yield return Row("trailing newline", "main", "main\n", false);
        yield return Row("prefix", "main", "mai", false);
        yield return Row("longer value", "main", "main-evil", false);
        yield return Row("Kelvin sign is not K", "K", "\u212A", false);
        yield return Row("dotless i is not i", "i", "\u0131", false);
        yield return Row("decomposed e-acute is not composed", "\u00E9", "e\u0301", false);
        yield return Row("ss is not sharp s", "strasse", "stra\u00DFe", false);
        yield return Row("quoted number", "\"5001\"", "5001", true);
        yield return Row("number compared as text", "\"5001\"", "05001", false);
    }

    [TestCaseSource(nameof(Exact))]
    public void Exact_ComparesOrdinally(string literal, string value, bool matches) =>
        Assert.That(RuleFiles.CompileCondition(literal.StartsWith('"') ? literal : RuleFiles.Quote(literal)).Matches(value), Is.EqualTo(matches));

    private static IEnumerable<TestCaseData> In()
    {
        yield return Row("first value", "{ in: [push, workflow_dispatch] }", "push", true);
        yield return Row("second value", "{ in: [push, workflow_dispatch] }", "workflow_dispatch", true);
        yield return Row("other value", "{ in: [push, workflow_dispatch] }", "pull_request", false);
        yield return Row("other case", "{ in: [push, workflow_dispatch] }", "PUSH", false);
        yield return Row("prefix of a value", "{ in: [push, workflow_dispatch] }", "workflow", false);
        yield return Row("joined values", "{ in: [push, workflow_dispatch] }", "push,workflow_dispatch", false);
        yield return Row("single value", "{ in: [push] }", "push", true);
    }

    [TestCaseSource(nameof(In))]
    public void In_MatchesOnlyListedValues(string condition, string value, bool matches) =>
        Assert.That(RuleFiles.CompileCondition(condition).Matches(value), Is.EqualTo(matches));

    private static IEnumerable<TestCaseData> Glob()
    {
        yield return Row("pinned workflow at a version tag", DeployWorkflow, "octo-org/workflows/.github/workflows/deploy.yml@refs/tags/v3.1.0", true);
        yield return Row("star does not cross a slash", DeployWorkflow, "octo-org/workflows/.github/workflows/deploy.yml@refs/tags/v3/evil", false);
        yield return Row("star may be empty", DeployWorkflow, "octo-org/workflows/.github/workflows/deploy.yml@refs/tags/v", true);
        yield return Row("workflow at a branch", DeployWorkflow, "octo-org/workflows/.github/workflows/deploy.yml@refs/heads/main", false);
        yield return Row("workflow in a lookalike repository", DeployWorkflow, "octo-org/workflows-evil/.github/workflows/deploy.yml@refs/tags/v3", false);
        yield return Row("dot is literal", "a.b", "axb", false);
        yield return Row("dot matches dot", "a.b", "a.b", true);
        yield return Row("brackets are literal", "refs/heads/[abc]", "refs/heads/a", false);
        yield return Row("brackets match brackets", "refs/heads/[abc]", "refs/heads/[abc]", true);
        yield return Row("plus is literal", "a+", "aa", false);
        yield return Row("backslash is literal", "a\\*", "a\\b", true);
        yield return Row("braces are literal", "{a,b}", "a", false);
        yield return Row("case matters", "refs/heads/Main", "refs/heads/main", false);
        yield return Row("question mark is one character", "refs/heads/release-?", "refs/heads/release-1", true);
        yield return Row("question mark is exactly one character", "refs/heads/release-?", "refs/heads/release-12", false);
        yield return Row("question mark is not empty", "refs/heads/release-?", "refs/heads/release-", false);
        yield return Row("question mark is not a slash", "refs/heads/a?b", "refs/heads/a/b", false);
        yield return Row("star in one segment", "octo-org/*", "octo-org/payments", true);
        yield return Row("star stops at the next segment", "octo-org/*", "octo-org/payments/x", false);
        yield return Row("star per segment", "*/*", "a/b", true);
        yield return Row("two stars do not cover three segments", "*/*", "a/b/c", false);
        yield return Row("star at start does not eat a slash", "*deploy", "/deploy", false);
        yield return Row("suffix in the same segment", "*.yml", "deploy.yml", true);
        yield return Row("suffix in another segment", "*.yml", "dir/deploy.yml", false);
        yield return Row("several stars backtrack within a segment", "a*b*c", "abxbc", true);
        yield return Row("several stars do not cross segments", "a*b*c", "a/b/c", false);
        yield return Row("literal must be whole value", "main", "main-evil", false);
        yield return Row("literal must start at the beginning", "main", "xmain", false);
        yield return Row("trailing newline is a character", "main", "main\n", false);
        yield return Row("star matches a trailing newline", "main*", "main\n", true);
    }

    [TestCaseSource(nameof(Glob))]
    public void Glob_StarAndQuestionMarkNeverCrossSlashAndEverythingElseIsLiteral(string pattern, string value, bool matches) =>
        Assert.That(RuleFiles.CompileCondition($"{{ glob: {RuleFiles.Quote(pattern)} }}").Matches(value), Is.EqualTo(matches));

    [Test]
    public void Glob_AgreesWithAReferenceTranslationOnRandomInputs()
    {
        // Reference semantics: '*' is [^/]*, '?' is [^/], everything else literal, the whole value anchored.
        var random = new Random(8693);
        var mismatches = new List<string>();
        for (var i = 0; i < 20_000 && mismatches.Count < 10; i++)
        {
            var pattern = RandomText(random, "ab/*?.", 8);
            var value = RandomText(random, "ab/.", 10);
            var reference = Regex.IsMatch(value, Translate(pattern), RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            if (GlobMatcher.IsMatch(pattern, value) != reference)
            {
                mismatches.Add($"glob \"{pattern}\" on \"{value}\": expected {reference}");
            }
        }

        Assert.That(mismatches, Is.Empty);
    }

    private static string RandomText(Random random, string alphabet, int maxLength)
    {
        var length = random.Next(maxLength + 1);
        var sb = new StringBuilder(length);
        for (var i = 0; i < length; i++)
        {
            sb.Append(alphabet[random.Next(alphabet.Length)]);
        }

        return sb.ToString();
    }

    private static string Translate(string glob)
    {
        var sb = new StringBuilder(@"\A");
        foreach (var c in glob)
        {
            sb.Append(c switch
            {
                '*' => "[^/]*",
                '?' => "[^/]",
                _ => Regex.Escape(c.ToString()),
            });
        }

        return sb.Append(@"\z").ToString();
    }

    [Test]
    public void Glob_OnLongAdversarialValue_StaysFast()
    {
        var condition = RuleFiles.CompileCondition("{ glob: '*a*a*a*a*a*a*a*a*b' }");
        var value = new string('a', 100_000);

        var watch = System.Diagnostics.Stopwatch.StartNew();
        var matches = condition.Matches(value);
        watch.Stop();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(matches, Is.False);
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(2)));
        }
    }

    private static IEnumerable<TestCaseData> Regexes()
    {
        yield return Row("whole value", "main", "main", true);
        yield return Row("no suffix", "main", "main-evil", false);
        yield return Row("no prefix", "main", "xmain", false);
        yield return Row("no trailing newline", "main", "main\n", false);
        yield return Row("no leading newline", "main", "\nmain", false);
        yield return Row("case matters", "main", "Main", false);
        yield return Row("alternation anchored on the left branch", "main|dev", "main-evil", false);
        yield return Row("alternation anchored on the right branch", "main|dev", "xdev", false);
        yield return Row("alternation first branch", "main|dev", "main", true);
        yield return Row("alternation second branch", "main|dev", "dev", true);
        yield return Row("explicit dollar does not admit a newline", "main$", "main\n", false);
        yield return Row("version tag", "v[0-9]+\\.[0-9]+\\.[0-9]+", "v2.4.0", true);
        yield return Row("version tag with suffix", "v[0-9]+\\.[0-9]+\\.[0-9]+", "v2.4.0-rc1", false);
        yield return Row("version tag with trailing newline", "v[0-9]+\\.[0-9]+\\.[0-9]+", "v2.4.0\n", false);
        yield return Row("dot does not match newline", "main.", "main\n", false);
        yield return Row("inline ignore-case is honoured", "(?i)main", "MAIN", true);
    }

    [TestCaseSource(nameof(Regexes))]
    public void Regex_IsAnchoredToTheWholeValue(string pattern, string value, bool matches) =>
        Assert.That(RuleFiles.CompileCondition($"{{ regex: {RuleFiles.Quote(pattern)} }}").Matches(value), Is.EqualTo(matches));

    [Test]
    public void Regex_OnLongAdversarialValue_StaysFast()
    {
        var condition = RuleFiles.CompileCondition("{ regex: '(a+)+b' }");
        var value = new string('a', 100_000);

        var watch = System.Diagnostics.Stopwatch.StartNew();
        var matches = condition.Matches(value);
        watch.Stop();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(matches, Is.False);
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(2)));
        }
    }

    private static IEnumerable<TestCaseData> Nots()
    {
        yield return Row("not exact on another value", "{ not: main }", "dev", true);
        yield return Row("not exact on the value", "{ not: main }", "main", false);
        yield return Row("not in on a listed value", "{ not: { in: [main, dev] } }", "dev", false);
        yield return Row("not in on another value", "{ not: { in: [main, dev] } }", "feature", true);
        yield return Row("not glob", "{ not: { glob: 'release/*' } }", "release/1", false);
        yield return Row("not glob across a slash", "{ not: { glob: 'release/*' } }", "release/1/x", true);
        yield return Row("not regex", "{ not: { regex: 'v[0-9]+' } }", "v12", false);
        yield return Row("not regex partial", "{ not: { regex: 'v[0-9]+' } }", "v12-rc", true);
        yield return Row("double not", "{ not: { not: main } }", "main", true);
        yield return Row("not on empty value", "{ not: main }", "", true);
    }

    [TestCaseSource(nameof(Nots))]
    public void Not_InvertsItsOperand(string condition, string value, bool matches) =>
        Assert.That(RuleFiles.CompileCondition(condition).Matches(value), Is.EqualTo(matches));

    private static IEnumerable<TestCaseData> Descriptions()
    {
        yield return new TestCaseData("main", "== \"main\"", new[] { "main" }).SetArgDisplayNames("exact");
        yield return new TestCaseData("{ in: [workflow_dispatch, push] }", "in [push, workflow_dispatch]", new[] { "push", "workflow_dispatch" }).SetArgDisplayNames("in");
        yield return new TestCaseData("{ glob: 'v*' }", "glob \"v*\"", null).SetArgDisplayNames("glob");
        yield return new TestCaseData("{ regex: 'v[0-9]+' }", "regex \"v[0-9]+\"", null).SetArgDisplayNames("regex");
        yield return new TestCaseData("{ not: main }", "not (== \"main\")", null).SetArgDisplayNames("not");
    }

    [TestCaseSource(nameof(Descriptions))]
    public void Describe_AndFiniteValues_ReflectTheOperator(string condition, string description, string[]? finiteValues)
    {
        var compiled = RuleFiles.CompileCondition(condition);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(compiled.Describe(), Is.EqualTo(description));
            if (finiteValues is null)
            {
                Assert.That(compiled.FiniteValues, Is.Null);
            }
            else
            {
                Assert.That(compiled.FiniteValues, Is.EquivalentTo(finiteValues));
            }
        }
    }
}
