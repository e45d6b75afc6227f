using System.Text.Json;
using TokenBroker.Audit;
using TokenBroker.Configuration;
using TokenBroker.Errors;
using TokenBroker.RateLimiting;
using TokenBroker.Rules;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Signing;
using TokenBroker.State;
using TokenBroker.Tokens;

namespace TokenBroker.Exchange;

/// <summary>A successful exchange, ready to be written as the RFC 8693 response.</summary>
internal sealed record IssuedToken(string AccessToken, string IssuedTokenType, string TokenType, int ExpiresIn, string? Scope);

/// <summary>The outcome of an exchange: a token, or a refusal with operator detail.</summary>
internal readonly record struct ExchangeOutcome(IssuedToken? Token, BrokerError? Error, int? RetryAfterSeconds = null)
{
    public static ExchangeOutcome Success(IssuedToken token) => new(token, null);

    public static ExchangeOutcome Fail(BrokerError error) => new(null, error);
}

/// <summary>
/// The exchange pipeline, one readable sequence: authenticate the subject token, spend the repository budget, evaluate trust rules, mint
/// claims, record state (replay + issued token, atomically), sign. Expected refusals are values; every path
/// fills the audit event, which the endpoint writes in a <c>finally</c>.
/// </summary>
internal sealed partial class ExchangeHandler(
    ResolvedSettings settings,
    SubjectTokenValidator validator,
    BrokerTokenValidator brokerTokens,
    RuleStore rules,
    SigningKeyRing keys,
    IStateStore state,
    BlockCache blocks,
    RepositoryRateLimiter repositoryLimit,
    TimeProvider time)
{
    /// <summary>At most this many rules are listed in a refusal's audit explanation, to bound the audit line.</summary>
    internal const int MaxExplainedRules = 50;

    public async Task<ExchangeOutcome> ExchangeAsync(ExchangeRequest request, AuditEvent audit, CancellationToken cancel)
    {
        audit.JobTokenSha256 = AuditEvent.Hash(request.SubjectToken);
        audit.RequestedAudiences = request.Audiences;
        audit.RequestedScopes = request.Scopes;
        if (request.SubjectTokenType == TokenTypes.AccessToken)
        {
            return await DownscopeAsync(request, audit, cancel).ConfigureAwait(false);
        }

        // 1. Authenticate the job token.
        var validation = await validator.ValidateAsync(request.SubjectToken, cancel).ConfigureAwait(false);
        if (validation.Token is not { } job)
        {
            return Refuse(audit, validation.Error!, validation.Detail);
        }

        var provider = job.Provider;
        var vocabulary = provider.Descriptor.Vocabulary;
        audit.Provider = provider.Name;
        audit.JobTokenJti = job.Jti;
        audit.RepositoryId = vocabulary.Neutral("repository_id")?.Read(job.Claims);
        audit.Repository = vocabulary.Neutral("repository")?.Read(job.Claims);
        audit.RunId = vocabulary.Neutral("run_id")?.Read(job.Claims);
        audit.RunnerEnvironment = job.Claims.Get("runner_environment");

        // 2. The repository's budget, spent only by tokens whose signature verified (a forgery cannot spend it).
        if (RepositoryLimited(audit, provider.Name, audit.RepositoryId, job.Subject) is { } limited)
        {
            return limited;
        }

        // 3. Evaluate the trust rules.
        var ruleSet = rules.Current;
        if (ruleSet is null)
        {
            return Refuse(audit, BrokerErrors.RulesUnavailable, "no rule set is loaded");
        }

        PolicyDecision decision;
        using (var rulesActivity = Hosting.BrokerTracing.Source.StartActivity("rules"))
        {
            decision = PolicyEvaluator.Evaluate(ruleSet, provider.Descriptor, job.Claims, new PolicyRequest(provider.Name, request.Audiences, request.Scopes));
            rulesActivity?.SetTag("tokenbroker.rule", decision.Rule?.Id);
        }

        audit.Rule = decision.Rule?.Id;
        if (!decision.IsGranted)
        {
            var error = BrokerErrors.ForPolicy(decision.Outcome);

            // Refusals are the rare path: evaluate again with a trace so the audit log says which condition failed, and
            // carries the explanation 'rules explain' would print for this token and request.
            var policyRequest = new PolicyRequest(provider.Name, request.Audiences, request.Scopes);
            var explanation = Explanation.Create(
                ruleSet, provider.Descriptor, job.Claims, policyRequest, new ExplainSource("request", $"request {audit.RequestId}", SignatureVerified: true), settings.Issuer, time.GetUtcNow());
            using (var document = JsonDocument.Parse(explanation.ToJson(indented: false, maxRules: MaxExplainedRules)))
            {
                audit.Explanation = document.RootElement.Clone();
            }

            return Refuse(audit, error, $"{decision.Detail}. {TraceSummary.Summarize(explanation.Decision.Trace ?? [])}");
        }

        var rule = decision.Rule!;
        var ownerId = vocabulary.Neutral("owner_id")?.Read(job.Claims);
        var now = time.GetUtcNow();

        // 4. Operator blocks, from this replica's copy (no state round trip). A copy that may be outdated fails closed.
        if (!blocks.IsFresh)
        {
            return Refuse(audit, BrokerErrors.StateUnavailable, "the block list could not be re-read recently; refusing rather than missing a block");
        }

        if (blocks.Current.FindMatch(provider.Name, audit.RepositoryId, ownerId, rule.Id, audit.RunId, DateTimeOffset.FromUnixTimeSeconds(now.ToUnixTimeSeconds())) is { } block)
        {
            return Refuse(audit, BrokerErrors.Blocked, $"blocked by operator block '{block.Id}' (created by '{block.CreatedBy}')");
        }

        // 5. Mint the claims. The jti starts with the replay key's shard tag (see StateKeys.ShardTag).
        var replayKey = ReplayKey(job.Issuer, job.Jti);
        var mint = IssuedClaims.Build(
            settings.Issuer, provider.Descriptor, job.Claims, decision, now, request.RequestedLifetime, StateKeys.ShardTag(replayKey) + TokenMinter.NewJti(), request.RequestedTokenType);
        var issuedAt = mint.IssuedAt;
        var lifetime = mint.ExpiresAt - mint.IssuedAt;

        // The verifiers of every audience must accept the algorithm (e.g. Azure needs RS256); refuse before consuming the job token.
        if (keys.AlgorithmFor(mint.Audiences) is not { } algorithm)
        {
            return Refuse(audit, BrokerErrors.AlgorithmConflict, $"audiences {string.Join(", ", mint.Audiences)} are configured for different signing algorithms");
        }

        // 6. Record state: the job token is consumed and the issued token registered in one atomic step.
        var record = new IssuedTokenRecord
        {
            Jti = mint.Jti,
            ExpiresAt = mint.ExpiresAt,
            IssuedAt = issuedAt,
            Subject = mint.Subject,
            Rule = rule.Id,
            Provider = provider.Name,
            RepositoryId = audit.RepositoryId,
            OwnerId = ownerId,
            RunId = audit.RunId,
        };
        bool fresh;
        try
        {
            fresh = await state.TryConsumeAsync(replayKey, job.ExpiresAt + settings.Exchange.ClockSkew, record, cancel).ConfigureAwait(false);
        }
        catch (StateUnavailableException e)
        {
            return Refuse(audit, BrokerErrors.StateUnavailable, e.Message);
        }

        if (!fresh)
        {
            return Refuse(audit, BrokerErrors.Replayed, $"job token jti '{JwtReader.Printable(job.Jti)}' of provider '{provider.Name}' was already exchanged");
        }

        // 7. Sign. If signing fails, give the job token back so the job can retry.
        string token;
        try
        {
            token = keys.Mint(mint, algorithm);
        }
        catch (SigningUnavailableException e)
        {
            try
            {
                await state.ReleaseAsync(replayKey, mint.Jti, CancellationToken.None).ConfigureAwait(false);
            }
            catch (StateUnavailableException)
            {
                // The mark expires with the job token; the job needs a fresh job token to retry.
            }

            return Refuse(audit, BrokerErrors.SigningUnavailable, e.Message);
        }

        return Issued(request, audit, mint, token, lifetime);
    }

    private static ExchangeOutcome Issued(ExchangeRequest request, AuditEvent audit, MintRequest mint, string token, TimeSpan lifetime)
    {
        audit.Outcome = "issued";
        audit.GrantedAudiences = mint.Audiences;
        audit.GrantedScopes = mint.Scopes;
        audit.IssuedJti = mint.Jti;
        audit.IssuedExpiresAt = mint.ExpiresAt;

        var accessToken = request.RequestedTokenType == TokenTypes.AccessToken;
        var scope = mint.Scopes.Count > 0 && (request.Scopes is null || !request.Scopes.SequenceEqual(mint.Scopes, StringComparer.Ordinal))
            ? string.Join(' ', mint.Scopes)
            : null;
        return ExchangeOutcome.Success(new IssuedToken(
            token,
            accessToken ? TokenTypes.AccessToken : TokenTypes.Jwt,
            accessToken ? "Bearer" : "N_A",
            (int)lifetime.TotalSeconds,
            scope));
    }

    /// <summary>
    /// A refusal when the provider + repository budget is spent, else null. A token without a repository id (an oidc
    /// provider that maps none) is limited by its subject instead, so it cannot share, and exhaust, one bucket.
    /// </summary>
    private ExchangeOutcome? RepositoryLimited(AuditEvent audit, string provider, string? repositoryId, string? subject)
    {
        var key = repositoryId is not null ? "repository_id:" + repositoryId : "sub:" + subject;
        if (repositoryLimit.TryAcquire(provider, key) is not { } retryAfter)
        {
            return null;
        }

        var refusal = Refuse(audit, BrokerErrors.RepositoryRateLimited, $"{repositoryLimit.Limit!.Describe()} exceeded for provider '{provider}' {(repositoryId is not null ? "repository_id '" + JwtReader.Printable(repositoryId) + "'" : "subject '" + JwtReader.Printable(subject ?? "") + "'")}; retry after {retryAfter} s");
        return refusal with { RetryAfterSeconds = retryAfter };
    }

    private static ExchangeOutcome Refuse(AuditEvent audit, BrokerError error, string? detail)
    {
        audit.Outcome = "refused";
        audit.ErrorId = error.Id;
        audit.ErrorCode = error.Code;
        audit.Detail = detail;
        return ExchangeOutcome.Fail(error);
    }

    /// <summary>The replay key: SHA-256 over the length-prefixed issuer and jti, so no two pairs collide by concatenation.</summary>
    internal static string ReplayKey(string issuer, string jti)
    {
        var text = $"{issuer.Length}:{issuer}|{jti.Length}:{jti}";
        return Security.Sha256Text.Hex(text);
    }
}
