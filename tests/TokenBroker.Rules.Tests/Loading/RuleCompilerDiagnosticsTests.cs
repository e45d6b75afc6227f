using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Tests.Support;
using static TokenBroker.Rules.Tests.Support.DiagnosticFormatting;

namespace TokenBroker.Rules.Tests.Loading;

/// <summary>
/// One mistake per file, and the exact diagnostic it must produce: id, severity, file, line and column.
/// Every case expects exactly one diagnostic, so a spurious follow-up error fails the case too.
/// Most cases use the private 'ghes' provider so that the owner-pin rule does not add a second error.
/// </summary>
[TestFixture]
public sealed class RuleCompilerDiagnosticsTests
{
    private static TestCaseData Case(string name, string yaml, string id, int line, int column) =>
        new TestCaseData(yaml, id, line, column).SetArgDisplayNames(name);

    private static IEnumerable<TestCaseData> SingleMistakes()
    {
        // --- TB2001 YAML syntax -------------------------------------------------------------------------------
        yield return Case("stray closing bracket", "rules: ]\n", RuleErrors.YamlSyntax, 1, 8);
        yield return Case("unterminated quoted string", """
            rules:
              - id: "r1
            """, RuleErrors.YamlSyntax, 2, 9);
        yield return Case("key indented off the block", """
            rules:
              - id: r1
               provider: ghes
            """, RuleErrors.YamlSyntax, 3, 4);
        yield return Case("two YAML documents", "rules: []\n---\nrules: []\n", RuleErrors.YamlSyntax, 1, 1);
        yield return Case("empty file", "", RuleErrors.YamlSyntax, 1, 1);

        // --- TB2002 unknown key, at every level -------------------------------------------------------------------
        yield return Case("unknown key at top level", """
            version: 1
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            owner: platform
            """, RuleErrors.UnknownKey, 11, 1);
        yield return Case("unknown key in a rule", """
            rules:
              - id: r1
                provider: ghes
                enabled: true
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.UnknownKey, 4, 5);
        yield return Case("unknown key in grant", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
                  lifetime: 10m
            """, RuleErrors.UnknownKey, 10, 7);

        // --- TB2003 wrong type ----------------------------------------------------------------------------------
        yield return Case("root is a list", "- rules\n", RuleErrors.WrongType, 1, 1);
        yield return Case("version is not 1", """
            version: 2
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.WrongType, 1, 10);
        yield return Case("rules is a string", "rules: all\n", RuleErrors.WrongType, 1, 8);
        yield return Case("a rule is a string", """
            rules:
              - r1
            """, RuleErrors.WrongType, 2, 5);
        yield return Case("id is a list", """
            rules:
              - id: [r1]
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.WrongType, 2, 9);
        yield return Case("allow_pull_requests is a quoted string", """
            rules:
              - id: r1
                provider: ghes
                allow_pull_requests: "true"
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.WrongType, 4, 26);
        yield return Case("allow_pull_requests is yes", """
            rules:
              - id: r1
                provider: ghes
                allow_pull_requests: yes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.WrongType, 4, 26);
        yield return Case("when is a list", """
            rules:
              - id: r1
                provider: ghes
                when: [ref]
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.WrongType, 4, 11);
        yield return Case("when is empty", """
            rules:
              - id: r1
                provider: ghes
                when: {}
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.WrongType, 4, 11);
        yield return Case("grant is a string", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant: everything
            """, RuleErrors.WrongType, 6, 12);
        yield return Case("audiences is a string", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: a
                  stage: deploy
                  subject: s
            """, RuleErrors.WrongType, 7, 18);
        yield return Case("an audience is a mapping", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a, {b: c}]
                  stage: deploy
                  subject: s
            """, RuleErrors.WrongType, 7, 22);
        yield return Case("claims is a list", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
                  claims: [team]
            """, RuleErrors.WrongType, 10, 15);

        // --- TB2004 missing key ---------------------------------------------------------------------------------
        yield return Case("no rules key", "version: 1\n", RuleErrors.MissingKey, 1, 1);
        yield return Case("rule without grant", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
            """, RuleErrors.MissingKey, 2, 5);
        yield return Case("grant without subject", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
            """, RuleErrors.MissingKey, 7, 7);

        // --- TB2005 duplicate rule id (same file; across files has its own test) ---------------------------------
        yield return Case("rule id used twice in one file", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/dev
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.DuplicateRuleId, 10, 9);

        // --- TB2006 invalid rule id -----------------------------------------------------------------------------
        foreach (var (name, badId) in new[] { ("upper case and underscore", "Payments_Deploy"), ("leading dash", "-deploy"), ("65 characters", new string('a', 65)) })
        {
            yield return Case($"rule id with {name}", $"""
                rules:
                  - id: {badId}
                    provider: ghes
                    when:
                      ref: refs/heads/main
                    grant:
                      audiences: [a]
                      stage: deploy
                      subject: s
                """, RuleErrors.InvalidRuleId, 2, 9);
        }

        // --- TB2007 unknown provider ----------------------------------------------------------------------------
        yield return Case("provider not configured", """
            rules:
              - id: r1
                provider: bitbucket
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.UnknownProvider, 3, 15);

        // --- TB2008 unknown claim -------------------------------------------------------------------------------
        yield return Case("GitLab claim in a GitHub rule", """
            rules:
              - id: r1
                provider: github
                when:
                  owner_id: "5001"
                  namespace_id: "72"
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.UnknownClaim, 6, 7);
        yield return Case("GitHub claim in a GitLab rule", """
            rules:
              - id: r1
                provider: gitlab
                when:
                  owner_id: "72"
                  job_workflow_ref: x
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.UnknownClaim, 6, 7);
        yield return Case("claim no provider defines", """
            rules:
              - id: r1
                provider: ghes
                when:
                  repo_name: payments
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.UnknownClaim, 5, 7);

        // --- TB2009 invalid condition ---------------------------------------------------------------------------
        yield return Case("unknown operator", """
            rules:
              - id: r1
                provider: ghes
                when:
                  event: { like: push }
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidCondition, 5, 16);
        yield return Case("two operators in one condition", """
            rules:
              - id: r1
                provider: ghes
                when:
                  event: { in: [push], glob: "p*" }
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidCondition, 5, 14);
        yield return Case("bare list instead of in", """
            rules:
              - id: r1
                provider: ghes
                when:
                  event: [push]
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidCondition, 5, 14);
        yield return Case("empty in list", """
            rules:
              - id: r1
                provider: ghes
                when:
                  event: { in: [] }
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidCondition, 5, 20);
        yield return Case("not nested four deep", """
            rules:
              - id: r1
                provider: ghes
                when:
                  event: { not: { not: { not: { not: push } } } }
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidCondition, 5, 42);

        // --- TB2010 invalid regex -------------------------------------------------------------------------------
        yield return Case("regex with an unclosed group", """
            rules:
              - id: r1
                provider: ghes
                when:
                  event: { regex: "(main" }
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidRegex, 5, 23);
        yield return Case("empty regex", """
            rules:
              - id: r1
                provider: ghes
                when:
                  event: { regex: "" }
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidRegex, 5, 23);

        // --- TB2011 invalid glob --------------------------------------------------------------------------------
        yield return Case("glob with **", """
            rules:
              - id: r1
                provider: ghes
                when:
                  workflow_ref: { glob: "octo-org/**" }
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidGlob, 5, 29);
        yield return Case("empty glob", """
            rules:
              - id: r1
                provider: ghes
                when:
                  event: { glob: "" }
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidGlob, 5, 22);

        // --- TB2012 invalid duration, TB2013 ttl above the maximum (1h by default) ----------------------------------
        foreach (var (name, ttl, id) in new[]
        {
            ("ttl in days", "1d", RuleErrors.InvalidDuration),
            ("ttl without unit", "600", RuleErrors.InvalidDuration),
            ("ttl of zero", "0s", RuleErrors.InvalidDuration),
            ("fractional ttl", "1.5h", RuleErrors.InvalidDuration),
            ("negative ttl", "-5m", RuleErrors.InvalidDuration),
            ("ttl units out of order", "5m1h", RuleErrors.InvalidDuration),
            ("ttl of 2h", "2h", RuleErrors.TtlAboveMaximum),
            ("ttl of 61m", "61m", RuleErrors.TtlAboveMaximum),
            ("ttl of 1h1s", "1h1s", RuleErrors.TtlAboveMaximum),
        })
        {
            yield return Case(name, $"""
                rules:
                  - id: r1
                    provider: ghes
                    when:
                      ref: refs/heads/main
                    grant:
                      audiences: [a]
                      stage: deploy
                      subject: s
                      ttl: {ttl}
                """, id, 10, 12);
        }

        // --- TB2014 invalid template ----------------------------------------------------------------------------
        foreach (var (name, subject) in new[]
        {
            ("subject naming a GitLab claim", "\"github:{namespace_path}\""),
            ("subject with an unmatched closing brace", "\"github:repo}\""),
            ("subject with an unclosed placeholder", "\"github:{repository\""),
            ("subject with an empty placeholder", "\"github:{}\""),
            ("empty subject", "\"\""),
        })
        {
            yield return Case(name, $"""
                rules:
                  - id: r1
                    provider: ghes
                    when:
                      ref: refs/heads/main
                    grant:
                      audiences: [a]
                      stage: deploy
                      subject: {subject}
                """, RuleErrors.InvalidTemplate, 9, 16);
        }

        yield return Case("claim value naming an unknown claim", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
                  claims: { team: "{nope}" }
            """, RuleErrors.InvalidTemplate, 10, 23);
        yield return Case("nested claim value with an unmatched brace", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
                  claims:
                    tags:
                      repo: ["{repository}}"]
            """, RuleErrors.InvalidTemplate, 12, 18);

        yield return Case("claim value nested five deep", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
                  claims: { a: { b: { c: { d: { e: x } } } } }
            """, RuleErrors.WrongType, 10, 40);

        // --- TB2015 reserved claim ------------------------------------------------------------------------------
        foreach (var reserved in new[] { "sub", "aud", "exp", "scope", "act", "repo", "stage" })
        {
            yield return Case($"reserved claim {reserved}", $$"""
                rules:
                  - id: r1
                    provider: ghes
                    when:
                      ref: refs/heads/main
                    grant:
                      audiences: [a]
                      stage: deploy
                      subject: s
                      claims: { {{reserved}}: x }
                """, RuleErrors.ReservedClaim, 10, 17);
        }

        // --- TB2018 audience, TB2019 scope, TB2024 stage ----------------------------------------------------------
        yield return Case("no audience", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: []
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidAudience, 7, 18);
        yield return Case("audience with a space", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: ["a b"]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidAudience, 7, 19);
        yield return Case("audience listed twice", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a, a]
                  stage: deploy
                  subject: s
            """, RuleErrors.InvalidAudience, 7, 22);
        yield return Case("scope with a space", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
                  scopes: ["deploy payments"]
            """, RuleErrors.InvalidScope, 10, 16);
        yield return Case("scope with a double quote", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
                  scopes: ['a"b']
            """, RuleErrors.InvalidScope, 10, 16);
        yield return Case("stage in upper case", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: Deploy
                  subject: s
            """, RuleErrors.InvalidStage, 8, 14);

        // --- TB2020 anchors, TB2021 duplicate mapping key ---------------------------------------------------------
        yield return Case("anchor on a value", """
            rules:
              - id: &name r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.AliasNotAllowed, 2, 9);
        yield return Case("duplicate key in a rule", """
            rules:
              - id: r1
                provider: ghes
                provider: github
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.DuplicateKey, 4, 5);
        yield return Case("duplicate claim in when", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                  ref: refs/heads/dev
                grant:
                  audiences: [a]
                  stage: deploy
                  subject: s
            """, RuleErrors.DuplicateKey, 6, 7);
        yield return Case("duplicate key spelled with a quoted key", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: read
                  subject: s
                  "stage": deploy
            """, RuleErrors.DuplicateKey, 10, 7);
        yield return Case("duplicate key spelled with an explicit string tag", """
            rules:
              - id: r1
                provider: ghes
                when:
                  ref: refs/heads/main
                grant:
                  audiences: [a]
                  stage: read
                  subject: s
                  !!str stage: deploy
            """, RuleErrors.DuplicateKey, 10, 7);
    }

    [TestCaseSource(nameof(SingleMistakes))]
    public void Compile_WithOneMistake_ReportsExactlyThatErrorAtItsPosition(string yaml, string id, int line, int column)
    {
        var result = RuleFiles.Compile(yaml);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Diagnostics.Positions(), Is.EqualTo(new[] { ErrorAt(id, line, column) }), result.Diagnostics.Describe);
            Assert.That(result.RuleSet, Is.Null);
            Assert.That(result.HasErrors, Is.True);
            Assert.That(result.Diagnostics.Select(d => d.Message), Has.All.Not.Empty);
        }
    }
}
