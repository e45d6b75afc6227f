using TokenBroker.Configuration;

namespace TokenBroker.RateLimiting;

/// <summary>
/// The per-repository exchange budget (<c>RateLimits:Repository</c>), keyed by provider and repository id. The
/// exchange asks it only after the job token's signature (or the presented broker token) has been verified: a forged
/// token naming someone else's repository is refused before it can spend that repository's budget.
/// </summary>
internal sealed class RepositoryRateLimiter
{
    public RepositoryRateLimiter(ResolvedSettings settings, TimeProvider time)
    {
        var options = settings.RateLimits;
        if (options.Enabled && options.Repository.Burst > 0)
        {
            Limit = new TokenBucketLimiter("Repository", options.Repository, options.MaxTrackedKeys, time);
        }
    }

    /// <summary>Null when the limit is off.</summary>
    public TokenBucketLimiter? Limit { get; }

    /// <summary>Takes one exchange from the budget; null when allowed, else the seconds to wait.</summary>
    public int? TryAcquire(string provider, string repositoryKey)
    {
        if (Limit is null)
        {
            return null;
        }

        // Length-prefixed so that no provider/repository pair can collide with another by concatenation.
        using var lease = Limit.AttemptAcquire($"{provider.Length}:{provider}|{repositoryKey}");
        return lease.IsAcquired ? null : ClientRateLimits.RetryAfterSeconds(lease);
    }
}
