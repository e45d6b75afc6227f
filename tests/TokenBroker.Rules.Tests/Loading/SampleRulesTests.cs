using TokenBroker.Rules.Diagnostics;
using TokenBroker.Rules.Loading;
using TokenBroker.Rules.Tests.Support;

namespace TokenBroker.Rules.Tests.Loading;

/// <summary>The rules shipped in config/rules must always compile against the github and gitlab providers.</summary>
[TestFixture]
public sealed class SampleRulesTests
{
    [Test]
    public void SampleRules_CompileWithoutAnyDiagnostic()
    {
        var result = RuleFiles.SampleResult;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Diagnostics, Is.Empty, result.Diagnostics.Describe);
            Assert.That(result.RuleSet, Is.Not.Null);
        }
    }

    [Test]
    public void SampleRules_KeepFileThenDeclaredOrder()
    {
        Assert.That(
            RuleFiles.SampleRules.Rules.Select(r => (r.Id, r.Provider, Path.GetFileName(r.Location.File))),
            Is.EqualTo(new[]
            {
                ("payments-deploy-prod", "github", "10-payments.yaml"),
                ("payments-release-tags", "github", "10-payments.yaml"),
                ("payments-ci-read", "github", "10-payments.yaml"),
                ("infra-staging-plan", "gitlab", "20-infra.yaml"),
                ("infra-production-apply", "gitlab", "20-infra.yaml"),
                ("infra-mr-plan", "gitlab", "20-infra.yaml"),
            }));
    }

    [Test]
    public void SampleRules_EachFileCompilesOnItsOwn()
    {
        foreach (var source in RuleFiles.SampleSources())
        {
            var result = RuleFiles.Compile(null, source);
            Assert.That(result.Diagnostics, Is.Empty, result.Diagnostics.Describe);
        }
    }

    [Test]
    public void SampleRules_PaymentsDeployProd_CompilesAsWritten()
    {
        var rule = RuleFiles.SampleRules.Rules[0];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(rule.Location.Line, Is.EqualTo(6), "line 1 is the yaml-language-server schema comment");
            Assert.That(rule.Location.Column, Is.EqualTo(5));
            Assert.That(rule.Conditions.Select(c => c.Claim), Is.EqualTo(new[] { "owner_id", "repository_id", "ref", "environment", "event", "workflow_ref" }));
            Assert.That(rule.Grant.Audiences, Is.EqualTo(new[] { "sts.amazonaws.com", "https://deploy.internal/payments" }));
            Assert.That(rule.Grant.Scopes, Is.EqualTo(new[] { "deploy:payments" }));
            Assert.That(rule.Grant.Stage, Is.EqualTo("deploy"));
            Assert.That(rule.Grant.Ttl, Is.EqualTo(TimeSpan.FromMinutes(10)));
            Assert.That(rule.Grant.Subject.Source, Is.EqualTo("github:{repository}:{environment}"));
            Assert.That(rule.AllowPullRequests, Is.False);
        }
    }

    [Test]
    public void SampleRules_WithTheFirstOwnerPinRemoved_ReportTB2016()
    {
        // The samples rely on the owner pin: without it the first rule of each file must no longer load.
        foreach (var source in RuleFiles.SampleSources())
        {
            var lines = source.Text.Split('\n');
            var pin = Array.FindIndex(lines, l => l.TrimStart().StartsWith("owner_id:", StringComparison.Ordinal));
            Assert.That(pin, Is.GreaterThanOrEqualTo(0), source.Name);
            var unpinned = string.Join('\n', lines.Where((_, i) => i != pin));

            var result = RuleFiles.Compile(null, new RuleSource(source.Name, unpinned));

            Assert.That(result.Diagnostics.Select(d => d.Id), Is.EqualTo(new[] { RuleErrors.SharedIssuerWithoutOwnerPin }), result.Diagnostics.Describe);
        }
    }
}
