using System.Globalization;
using System.Text;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Model;
using TokenBroker.Rules.Providers;
using TokenBroker.Rules.Tests.Support;

namespace TokenBroker.Rules.Tests.Evaluation;

/// <summary>The rule index must never change a decision: indexed evaluation equals a full scan, always.</summary>
[TestFixture]
public sealed class RuleIndexTests
{
    private static RuleSet RandomRules(Random random, int count)
    {
        var yaml = new StringBuilder("rules:\n");
        for (var i = 0; i < count; i++)
        {
            var repo = random.Next(4) switch
            {
                0 => $"repository_id: \"{random.Next(5)}\"",
                1 => $"repository_id: {{ in: [\"{random.Next(5)}\", \"{random.Next(5)}\"] }}",
                2 => $"repository_id: {{ not: \"{random.Next(5)}\" }}",
                _ => "ref: { glob: \"refs/heads/*\" }",
            };
            var env = random.Next(3) == 0 ? ", environment: production" : string.Empty;
            var aud = random.Next(2) == 0 ? "https://a" : "https://b";
            yaml.Append(CultureInfo.InvariantCulture, $"  - id: r{i}\n    provider: ghes\n    when: {{ {repo}{env} }}\n    grant: {{ audiences: [{aud}], stage: read, subject: \"s{i}\" }}\n");
        }

        var result = new RuleCompiler(TestProviders.All, new RuleLoadOptions()).Compile([new RuleSource("random.yaml", yaml.ToString())]);
        return result.RuleSet ?? throw new InvalidOperationException(string.Join('\n', result.Diagnostics));
    }

    [Test]
    public void IndexedEvaluation_DecidesExactlyAsAFullScan([Values(1, 2, 3, 4, 5)] int seed)
    {
        var random = new Random(seed);
        var rules = RandomRules(random, 60);
        for (var n = 0; n < 500; n++)
        {
            var values = new Dictionary<string, string> { ["ref"] = random.Next(2) == 0 ? "refs/heads/main" : "refs/tags/v1" };
            if (random.Next(5) > 0)
            {
                values["repository_id"] = random.Next(6).ToString(CultureInfo.InvariantCulture);
            }

            if (random.Next(2) == 0)
            {
                values["environment"] = "production";
            }

            var claims = new DictionaryJobClaims(values);
            var request = new PolicyRequest("ghes", [random.Next(2) == 0 ? "https://a" : "https://b"], null);

            var indexed = PolicyEvaluator.Evaluate(rules, TestProviders.Ghes, claims, request);
            var scanned = PolicyEvaluator.Evaluate(rules, TestProviders.Ghes, claims, request, trace: true);

            Assert.That((indexed.Outcome, indexed.Rule?.Id), Is.EqualTo((scanned.Outcome, scanned.Rule?.Id)), $"claims {string.Join(", ", values)}");
        }
    }

    [Test]
    public void Candidates_SkipRulesPinnedToOtherRepositories_AndKeepDeclaredOrder()
    {
        var rules = RandomRules(new Random(7), 40);
        var claims = new DictionaryJobClaims(new Dictionary<string, string> { ["repository_id"] = "3", ["ref"] = "refs/heads/main" });

        var candidates = new List<string>();
        foreach (var rule in rules.Candidates("ghes", claims))
        {
            candidates.Add(rule.Id);
        }

        var all = rules.ForProvider("ghes").ToArray().Select(r => r.Id).ToList();
        Assert.That(candidates, Has.Count.LessThan(all.Count), "the index skips rules");
        Assert.That(candidates, Is.EqualTo(all.Where(candidates.Contains).ToList()), "declared order is kept");
        var skipped = rules.ForProvider("ghes").ToArray().Where(r => !candidates.Contains(r.Id));
        Assert.That(skipped.All(r => !r.Conditions.All(c => c.Accessor.Read(claims) is { } v && c.Condition.Matches(v))), "no skipped rule could have matched");
    }

    [Test]
    public void Index_PicksTheMostSelectiveClaim_NotOneEveryRulePinsToTheSameValue()
    {
        var yaml = new StringBuilder("rules:\n");
        for (var i = 0; i < 50; i++)
        {
            yaml.Append(CultureInfo.InvariantCulture, $"  - id: r{i}\n    provider: ghes\n    when: {{ owner_id: \"5001\", repository_id: \"{i}\", ref: refs/heads/main }}\n    grant: {{ audiences: [a], stage: read, subject: s }}\n");
        }

        var rules = new RuleCompiler(TestProviders.All, new RuleLoadOptions()).Compile([new RuleSource("many.yaml", yaml.ToString())]).RuleSet!;
        var claims = new DictionaryJobClaims(new Dictionary<string, string> { ["repository_owner_id"] = "5001", ["repository_id"] = "7", ["ref"] = "refs/heads/main" });

        var candidates = 0;
        foreach (var rule in rules.Candidates("ghes", claims))
        {
            candidates++;
            Assert.That(rule.Id, Is.EqualTo("r7"));
        }

        Assert.That(candidates, Is.EqualTo(1), "one bucket per repository id, not one bucket for the shared owner id or ref");
    }
}
