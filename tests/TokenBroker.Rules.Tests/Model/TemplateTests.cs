using TokenBroker.Rules.Model;
using TokenBroker.Rules.Providers;
using TokenBroker.Rules.Tests.Support;

namespace TokenBroker.Rules.Tests.Model;

[TestFixture]
public sealed class TemplateTests
{
    private static readonly TemplateContext Context = new("github", "payments-deploy-prod", "deploy");

    private static string Render(string source, IJobClaims claims)
    {
        var template = Template.Parse(source, ClaimVocabulary.GitHub, out var error);
        Assert.That(template, Is.Not.Null, error);
        Assert.That(template!.TryRender(claims, Context, out var result, out var missing), Is.True, $"missing {missing}");
        return result;
    }

    private static IEnumerable<TestCaseData> Renderings()
    {
        static TestCaseData R(string name, string source, string expected) => new TestCaseData(source, expected).SetArgDisplayNames(name);

        yield return R("literal only", "github:payments", "github:payments");
        yield return R("neutral claims", "github:{repository}:{environment}", "github:octo-org/payments:production");
        yield return R("neutral name mapped to a raw claim", "{owner_id}/{repository_id}", "5001/900101");
        yield return R("raw claim", "{repository_owner_id}", "5001");
        yield return R("derived branch", "{branch}", "main");
        yield return R("placeholder only", "{ref}", "refs/heads/main");
        yield return R("adjacent placeholders", "{owner}{repository_id}", "octo-org900101");
        yield return R("broker values", "{provider}:{rule}:{stage}", "github:payments-deploy-prod:deploy");
        yield return R("escaped opening brace", "a{{b", "a{b");
        yield return R("escaped closing brace", "a}}b", "a}b");
        yield return R("escaped braces around a literal", "{{repository}}", "{repository}");
        yield return R("escaped braces around a placeholder", "{{{repository}}}", "{octo-org/payments}");
        yield return R("JSON-looking literal", "{{\"k\": \"{environment}\"}}", "{\"k\": \"production\"}");
        yield return R("empty template", "", "");
    }

    [TestCaseSource(nameof(Renderings))]
    public void TryRender_ReplacesPlaceholdersAndUnescapesBraces(string source, string expected) =>
        Assert.That(Render(source, Fixtures.GitHub("push_main_production")), Is.EqualTo(expected));

    [Test]
    public void TryRender_ClaimValuesAreNotReinterpreted()
    {
        var claims = Fixtures.Claims(("environment", "{repository}}{{"));

        Assert.That(Render("env={environment}", claims), Is.EqualTo("env={repository}}{{"));
    }

    [Test]
    public void TryRender_WithAbsentClaim_FailsNamingThePlaceholder()
    {
        var template = Template.Parse("github:{repository}:{environment}", ClaimVocabulary.GitHub, out _)!;

        var ok = template.TryRender(Fixtures.GitHub("pull_request_from_fork"), Context, out var result, out var missing);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ok, Is.False);
            Assert.That(missing, Is.EqualTo("environment"));
            Assert.That(result, Is.Empty);
        }
    }

    [Test]
    public void TryRender_WithDerivedClaimThatDoesNotApply_FailsNamingThePlaceholder()
    {
        var template = Template.Parse("{branch}", ClaimVocabulary.GitHub, out _)!;

        var ok = template.TryRender(Fixtures.GitHub("tag_release_immutable_sub"), Context, out _, out var missing);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ok, Is.False);
            Assert.That(missing, Is.EqualTo("branch"));
        }
    }

    [Test]
    public void Placeholders_ListsNamesInOrderIncludingBrokerValues()
    {
        var template = Template.Parse("{{x}}{repository}:{stage}:{owner_id}", ClaimVocabulary.GitHub, out _)!;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(template.Placeholders, Is.EqualTo(new[] { "repository", "stage", "owner_id" }));
            Assert.That(template.Source, Is.EqualTo("{{x}}{repository}:{stage}:{owner_id}"));
        }
    }

    private static IEnumerable<TestCaseData> Malformed()
    {
        static TestCaseData M(string name, string source, string error) => new TestCaseData(source, error).SetArgDisplayNames(name);

        yield return M("unknown claim", "{nope}", "'{nope}'");
        yield return M("claim of another provider", "{namespace_path}", "'{namespace_path}'");
        yield return M("empty placeholder", "a{}b", "empty placeholder");
        yield return M("unclosed placeholder", "a{repository", "unclosed '{'");
        yield return M("lone closing brace", "a}b", "unmatched '}'");
        yield return M("closing brace after a placeholder", "{repository}}", "unmatched '}'");
        yield return M("opening brace inside a placeholder", "{repo{sitory}", "names a claim");
        yield return M("placeholder with spaces", "{ repository }", "names a claim");
        yield return M("placeholder with case changed", "{Repository}", "names a claim");
    }

    [TestCaseSource(nameof(Malformed))]
    public void Parse_WithMalformedTemplate_ReturnsNullAndSaysWhy(string source, string error)
    {
        var template = Template.Parse(source, ClaimVocabulary.GitHub, out var message);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(template, Is.Null);
            Assert.That(message, Does.Contain(error));
        }
    }

    [Test]
    public void Parse_ForGitLab_ResolvesNeutralNamesToGitLabClaims()
    {
        var template = Template.Parse("gitlab:{repository}:{owner_id}:{branch}", ClaimVocabulary.GitLab, out _)!;

        var ok = template.TryRender(Fixtures.GitLab("protected_main_staging"), new TemplateContext("gitlab", "r", "deploy"), out var result, out _);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ok, Is.True);
            Assert.That(result, Is.EqualTo("gitlab:platform/infra:72:main"));
        }
    }
}
