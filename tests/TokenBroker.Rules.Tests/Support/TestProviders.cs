using TokenBroker.Rules.Providers;

namespace TokenBroker.Rules.Tests.Support;

/// <summary>The providers rules are compiled against, shaped like the broker's configuration.</summary>
internal static class TestProviders
{
    /// <summary>github.com: one issuer for every tenant, so rules must pin an owner id.</summary>
    public static ProviderDescriptor GitHub { get; } = new("github", ProviderKind.GitHub, SharedIssuer: true, ClaimVocabulary.GitHub);

    /// <summary>gitlab.com: shared issuer as well.</summary>
    public static ProviderDescriptor GitLab { get; } = new("gitlab", ProviderKind.GitLab, SharedIssuer: true, ClaimVocabulary.GitLab);

    /// <summary>A GitHub Enterprise Server: a private issuer, so no owner pin is needed. Lets tests isolate other checks.</summary>
    public static ProviderDescriptor Ghes { get; } = new("ghes", ProviderKind.GitHub, SharedIssuer: false, ClaimVocabulary.GitHub);

    public static IReadOnlyDictionary<string, ProviderDescriptor> All { get; } = new Dictionary<string, ProviderDescriptor>(StringComparer.Ordinal)
    {
        [GitHub.Name] = GitHub,
        [GitLab.Name] = GitLab,
        [Ghes.Name] = Ghes,
    };
}
