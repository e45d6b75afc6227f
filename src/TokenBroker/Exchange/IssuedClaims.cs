using TokenBroker.Rules.Evaluation;
using TokenBroker.Rules.Providers;
using TokenBroker.Signing;

namespace TokenBroker.Exchange;

/// <summary>
/// Builds the claims of the token a granted decision issues. The exchange signs them; <c>rules explain</c> and
/// <c>rules test</c> show them unsigned. One function, so what the tools show is what the broker issues.
/// </summary>
internal static class IssuedClaims
{
    /// <summary>The claims for a granted <paramref name="decision"/>.</summary>
    /// <param name="issuer">The broker's issuer (<c>TokenBroker:Issuer</c>).</param>
    /// <param name="provider">The provider that issued the job token.</param>
    /// <param name="claims">The job token's claims.</param>
    /// <param name="decision">A granted decision.</param>
    /// <param name="now">The current time; <c>iat</c> is it truncated to whole seconds.</param>
    /// <param name="requestedLifetime">The request's <c>requested_lifetime</c>, which may only shorten the rule's ttl.</param>
    /// <param name="jti">The new token's id.</param>
    /// <param name="requestedTokenType">The request's <c>requested_token_type</c>, which picks the <c>typ</c> header.</param>
    public static MintRequest Build(
        string issuer,
        ProviderDescriptor provider,
        IJobClaims claims,
        PolicyDecision decision,
        DateTimeOffset now,
        TimeSpan? requestedLifetime,
        string jti,
        string? requestedTokenType)
    {
        var rule = decision.Rule ?? throw new ArgumentException("the decision has no rule", nameof(decision));
        if (!decision.IsGranted)
        {
            throw new ArgumentException("the decision is a refusal", nameof(decision));
        }

        var issuedAt = DateTimeOffset.FromUnixTimeSeconds(now.ToUnixTimeSeconds());
        var lifetime = rule.Grant.Ttl;
        if (requestedLifetime is { } asked && asked < lifetime)
        {
            lifetime = asked;
        }

        var vocabulary = provider.Vocabulary;
        var repository = vocabulary.Neutral("repository")?.Read(claims);
        return new MintRequest
        {
            Issuer = issuer,
            Subject = decision.Subject!,
            Audiences = decision.Audiences,
            IssuedAt = issuedAt,
            ExpiresAt = issuedAt + lifetime,
            Jti = jti,
            ClientId = repository is not null ? $"{provider.Name}:{repository}" : $"{provider.Name}:{claims.Get("sub") ?? "unknown"}",
            Scopes = decision.Scopes,
            Type = requestedTokenType == TokenTypes.Jwt ? "JWT" : "at+jwt",
            Context = Context(provider, claims, rule.Grant.Stage, rule.Id),
            Extra = decision.Claims,
        };
    }

    private static List<KeyValuePair<string, string>> Context(ProviderDescriptor provider, IJobClaims claims, string stage, string rule)
    {
        var vocabulary = provider.Vocabulary;
        var context = new List<KeyValuePair<string, string>>(9);
        Add(context, vocabulary, claims, "repo", "repository");
        Add(context, vocabulary, claims, "repo_id", "repository_id");
        Add(context, vocabulary, claims, "ref", "ref");
        Add(context, vocabulary, claims, "branch", "branch");
        Add(context, vocabulary, claims, "environment", "environment");
        Add(context, vocabulary, claims, "run_id", "run_id");
        context.Add(new("stage", stage));
        context.Add(new("provider", provider.Name));
        context.Add(new("rule", rule));
        return context;
    }

    /// <summary>Adds <paramref name="claim"/> with the value of the neutral claim, when the job token has one.</summary>
    private static void Add(List<KeyValuePair<string, string>> context, ClaimVocabulary vocabulary, IJobClaims claims, string claim, string neutral)
    {
        if (vocabulary.Neutral(neutral)?.Read(claims) is { } value)
        {
            context.Add(new(claim, value));
        }
    }
}
