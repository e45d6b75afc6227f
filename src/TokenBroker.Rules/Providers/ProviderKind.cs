namespace TokenBroker.Rules.Providers;

/// <summary>The families of CI token issuers the broker understands.</summary>
public enum ProviderKind
{
    /// <summary>GitHub Actions (github.com, GHE.com enterprise slugs, GitHub Enterprise Server).</summary>
    GitHub,

    /// <summary>GitLab CI (gitlab.com and self-managed instances).</summary>
    GitLab,

    /// <summary>Any other OIDC issuer; its claims are declared in configuration.</summary>
    Oidc,
}

/// <summary>What the rule compiler needs to know about one configured provider.</summary>
/// <param name="Name">The name rules use in <c>provider:</c>.</param>
/// <param name="Kind">The claim vocabulary.</param>
/// <param name="SharedIssuer">True for issuers that sign tokens for every tenant (github.com, gitlab.com): rules must pin an owner id.</param>
/// <param name="Vocabulary">The claims rules may name for this provider.</param>
public sealed record ProviderDescriptor(string Name, ProviderKind Kind, bool SharedIssuer, ClaimVocabulary Vocabulary);
