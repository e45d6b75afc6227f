using System.Diagnostics;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Rules.Providers;
using TokenBroker.Rules.Tests.Support;

namespace TokenBroker.Rules.Tests.Model;

/// <summary>
/// Values an attacker controls (repository and branch names, refs) against every operator, through a whole
/// evaluation rather than a lone condition: the rule must not match any of them.
/// </summary>
[TestFixture]
public sealed class HostileValueTests
{
    private static TestCaseData Row(string name, string claim, string condition, string value, bool matches) =>
        new TestCaseData(claim, condition, value, matches).SetArgDisplayNames(name);

    private static IEnumerable<TestCaseData> Rows()
    {
        // Look-alike repository names.
        yield return Row("repository with a suffix", "repository", "octo-org/payments", "octo-org/payments-evil", false);
        yield return Row("repository with a prefix", "repository", "octo-org/payments", "evil-octo-org/payments", false);
        yield return Row("repository in a look-alike owner", "repository", "octo-org/payments", "octo-0rg/payments", false);
        yield return Row("repository with a trailing slash", "repository", "octo-org/payments", "octo-org/payments/", false);
        yield return Row("repository in other case", "repository", "octo-org/payments", "Octo-Org/Payments", false);
        yield return Row("repository glob against a deeper path", "repository", "{ glob: 'octo-org/*' }", "octo-org/payments/../../evil", false);
        yield return Row("repository glob against a sibling owner", "repository", "{ glob: 'octo-org/*' }", "octo-org-evil/payments", false);
        yield return Row("repository in-list against a joined value", "repository", "{ in: [octo-org/a, octo-org/b] }", "octo-org/a octo-org/b", false);

        // Refs with suffixes, prefixes and trailing newlines.
        yield return Row("ref with a suffix", "ref", "refs/heads/main", "refs/heads/main-evil", false);
        yield return Row("ref with a path suffix", "ref", "refs/heads/main", "refs/heads/main/evil", false);
        yield return Row("ref with a trailing newline", "ref", "refs/heads/main", "refs/heads/main\n", false);
        yield return Row("ref with a trailing carriage return", "ref", "refs/heads/main", "refs/heads/main\r", false);
        yield return Row("ref with a trailing NUL", "ref", "refs/heads/main", "refs/heads/main\0", false);
        yield return Row("ref with a leading space", "ref", "refs/heads/main", " refs/heads/main", false);
        yield return Row("tag ref against a branch", "ref", "refs/heads/main", "refs/tags/main", false);
        yield return Row("branch derived from a tag ref", "branch", "main", "refs/tags/main", false);
        yield return Row("branch derived from a nested ref", "branch", "main", "refs/heads/refs/heads/main", false);
        yield return Row("regex ref with a trailing newline", "ref", "{ regex: 'refs/heads/(main|release-[0-9]+)' }", "refs/heads/main\n", false);
        yield return Row("regex ref with a suffix", "ref", "{ regex: 'refs/heads/(main|release-[0-9]+)' }", "refs/heads/release-1x", false);
        yield return Row("regex ref that matches", "ref", "{ regex: 'refs/heads/(main|release-[0-9]+)' }", "refs/heads/release-12", true);
        yield return Row("regex with explicit anchors and a newline", "ref", "{ regex: '^refs/heads/main$' }", "refs/heads/main\n", false);
        yield return Row("regex alternation cannot escape the anchors", "ref", "{ regex: 'refs/heads/main|x' }", "refs/heads/main-evil", false);
        yield return Row("glob star does not cross a slash after a newline", "ref", "{ glob: 'refs/heads/*' }", "refs/heads/a\n/evil", false);

        // Case differences.
        yield return Row("environment in other case", "environment", "production", "Production", false);
        yield return Row("environment in upper case", "environment", "production", "PRODUCTION", false);
        yield return Row("event in other case", "event", "{ in: [push] }", "Push", false);
        yield return Row("glob in other case", "ref", "{ glob: 'refs/heads/release-*' }", "refs/heads/RELEASE-1", false);

        // Unicode confusables, compared ordinally.
        yield return Row("Cyrillic a in the owner", "repository", "octo-org/payments", "octo-org/p\u0430yments", false);
        yield return Row("Greek omicron in the owner", "repository", "octo-org/payments", "\u03BFcto-org/payments", false);
        yield return Row("fullwidth solidus", "repository", "octo-org/payments", "octo-org\uFF0Fpayments", false);
        yield return Row("zero-width space", "repository", "octo-org/payments", "octo-org/pay\u200Bments", false);
        yield return Row("right-to-left override", "ref", "refs/heads/main", "refs/heads/\u202Eniam", false);
        yield return Row("Kelvin sign for K in an environment", "environment", "K8s", "\u212A8s", false);
        yield return Row("composed against decomposed", "environment", "caf\u00E9", "cafe\u0301", false);
        yield return Row("Cyrillic letter against a glob", "repository", "{ glob: 'octo-org/pay*' }", "octo-org/p\u0430yments", false);
        yield return Row("Cyrillic letter against a regex class", "ref", "{ regex: 'refs/heads/[a-z]+' }", "refs/heads/m\u0430in", false);
    }

    [TestCaseSource(nameof(Rows))]
    public void HostileValues_MatchOnlyWhatTheRuleSays(string claim, string condition, string value, bool matches)
    {
        var rules = RuleFiles.CompileValid($"""
            rules:
              - id: r1
                provider: ghes
                when:
                  {claim}: {condition}
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """);
        var source = rules.Rules[0].Conditions[0].Accessor.Source;
        var claims = new DictionaryJobClaims(new Dictionary<string, string>(StringComparer.Ordinal) { [source] = value });

        var decision = PolicyEvaluator.Evaluate(rules, TestProviders.Ghes, claims, new PolicyRequest("ghes", ["a"], null));

        Assert.That(decision.IsGranted, Is.EqualTo(matches), decision.Detail);
    }

    [Test]
    public void CatastrophicPattern_OnA50KilobyteValue_FinishesFast()
    {
        var condition = RuleFiles.CompileCondition("{ regex: '(a+)+$' }");
        var matching = new string('a', 50 * 1024);
        var hostile = matching + "!";

        var watch = Stopwatch.StartNew();
        var first = condition.Matches(hostile);
        var second = condition.Matches(matching);
        watch.Stop();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(first, Is.False, "the value has a trailing '!'");
            Assert.That(second, Is.True);
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(1)), "the linear-time engine must not backtrack");
        }
    }

    [Test]
    public void CatastrophicPatterns_OfSeveralShapes_OnA50KilobyteValue_FinishFast()
    {
        string[] patterns = ["(a|a)+$", "(a|aa)+b", "(.*a){12}", "([a-z]+)*c", "(a*)*b"];
        var value = new string('a', 50 * 1024) + "!";

        var watch = Stopwatch.StartNew();
        var results = patterns.Select(p => RuleFiles.CompileCondition($"{{ regex: {RuleFiles.Quote(p)} }}").Matches(value)).ToList();
        watch.Stop();

        Assert.That(results, Has.All.False);
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)));
    }
}
