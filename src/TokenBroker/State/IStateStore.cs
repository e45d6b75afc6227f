namespace TokenBroker.State;

/// <summary>What the broker remembers about a token it issued; kept until the token expires.</summary>
public sealed record IssuedTokenRecord
{
    public required string Jti { get; init; }
    public required DateTimeOffset ExpiresAt { get; init; }
    public required string Subject { get; init; }
    public required string Rule { get; init; }
    public required string Provider { get; init; }
    public string? RepositoryId { get; init; }
    public string? OwnerId { get; init; }
    public string? RunId { get; init; }
    public required DateTimeOffset IssuedAt { get; init; }
}

/// <summary>
/// Shared exchange state: replay protection for job tokens and the registry of issued tokens. Implementations:
/// in-memory (one process; development and tests) and Redis (shared by every replica). Every method either
/// completes or throws <see cref="StateUnavailableException"/>; callers fail closed on that.
/// </summary>
public interface IStateStore
{
    /// <summary>
    /// Atomically marks a job token as used and records the token about to be issued for it. Returns false, and
    /// records nothing, when the job token was already used.
    /// </summary>
    /// <param name="replayKey">A hash of (issuer, jti) of the job token.</param>
    /// <param name="replayExpiresAt">When the mark may be forgotten: the job token's expiry plus leeway.</param>
    /// <param name="issued">The token to record.</param>
    /// <param name="cancel">Cancels the wait, not an operation already sent.</param>
    ValueTask<bool> TryConsumeAsync(string replayKey, DateTimeOffset replayExpiresAt, IssuedTokenRecord issued, CancellationToken cancel);

    /// <summary>
    /// Undoes <see cref="TryConsumeAsync"/> when the token could not be signed, so that the job can retry with the
    /// same job token. Removes the mark only if it still belongs to <paramref name="issuedJti"/>.
    /// </summary>
    ValueTask ReleaseAsync(string replayKey, string issuedJti, CancellationToken cancel);

    /// <summary>Records a token issued without consuming a job token (a downscoped broker token).</summary>
    ValueTask RecordIssuedAsync(IssuedTokenRecord issued, CancellationToken cancel);

    /// <summary>The record of an issued token, or null when unknown or expired.</summary>
    ValueTask<IssuedTokenRecord?> GetIssuedAsync(string jti, CancellationToken cancel);

    /// <summary>Whether the store answers; readiness uses this.</summary>
    ValueTask<bool> PingAsync(CancellationToken cancel);
}

/// <summary>The state store cannot be reached or answered too slowly. Exchanges answer 503; no token is issued.</summary>
public sealed class StateUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
