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

    /// <summary>When the token was revoked (by its holder or an operator); null while it is not revoked.</summary>
    public DateTimeOffset? RevokedAt { get; init; }
}

/// <summary>
/// Shared exchange state: replay protection for job tokens, the registry of issued tokens (revocation,
/// introspection) and operator blocks. Implementations: in-memory (one process; development and tests) and Redis
/// (shared by every replica). Every method either completes or throws <see cref="StateUnavailableException"/>;
/// callers fail closed on that.
/// </summary>
public interface IStateStore
{
    /// <summary>
    /// Marks a job token as used, exactly once across every replica, and records the token about to be issued for it.
    /// Returns false when the job token was already used; the record of that attempt is then not kept.
    /// </summary>
    /// <param name="replayKey">A hash of (issuer, jti) of the job token (lower-case hex SHA-256).</param>
    /// <param name="replayExpiresAt">When the mark may be forgotten: the job token's expiry plus leeway.</param>
    /// <param name="issued">The token to record. Its <c>Jti</c> starts with <see cref="StateKeys.ShardTag"/> of the replay key.</param>
    /// <param name="cancel">Cancels the wait, not an operation already sent.</param>
    ValueTask<bool> TryConsumeAsync(string replayKey, DateTimeOffset replayExpiresAt, IssuedTokenRecord issued, CancellationToken cancel);

    /// <summary>
    /// Undoes <see cref="TryConsumeAsync"/> when the token could not be signed, so that the job can retry with the
    /// same job token. Removes the mark only if it still belongs to <paramref name="issuedJti"/>.
    /// </summary>
    ValueTask ReleaseAsync(string replayKey, string issuedJti, CancellationToken cancel);

    /// <summary>
    /// Records a token issued without consuming a job token (a downscoped broker token). Its <c>Jti</c> carries a
    /// shard tag (<see cref="StateKeys.HasShardTag"/>).
    /// </summary>
    ValueTask RecordIssuedAsync(IssuedTokenRecord issued, CancellationToken cancel);

    /// <summary>The record of an issued token, or null when unknown or expired.</summary>
    ValueTask<IssuedTokenRecord?> GetIssuedAsync(string jti, CancellationToken cancel);

    /// <summary>
    /// Marks an issued token as revoked. Returns false when the token is unknown or expired (nothing to revoke).
    /// Revoking twice keeps the first time.
    /// </summary>
    ValueTask<bool> RevokeAsync(string jti, DateTimeOffset revokedAt, CancellationToken cancel);

    /// <summary>The current blocks with their version (a counter that grows with every change).</summary>
    ValueTask<BlockSet> GetBlocksAsync(CancellationToken cancel);

    /// <summary>Adds a block and returns the new version. Every replica is notified (<see cref="BlocksChanged"/>).</summary>
    ValueTask<long> AddBlockAsync(Block block, CancellationToken cancel);

    /// <summary>Removes a block; returns false when no block has that id.</summary>
    ValueTask<bool> RemoveBlockAsync(string id, CancellationToken cancel);

    /// <summary>Whether the store answers; readiness uses this.</summary>
    ValueTask<bool> PingAsync(CancellationToken cancel);

    /// <summary>
    /// Raised when blocks may have changed: a change notification from any replica, or a reconnection after which
    /// notifications may have been missed. Listeners re-read <see cref="GetBlocksAsync"/>.
    /// </summary>
    event Action? BlocksChanged;

    /// <summary>Every recorded key rotation, oldest first, with the record's version.</summary>
    ValueTask<KeyRotationSet> GetKeyRotationsAsync(CancellationToken cancel);

    /// <summary>
    /// Records a rotation if the record is still at <paramref name="expectedVersion"/> and holds no rotation for the
    /// same key; returns the new version, or null (nothing written) when another rotation got there first. Every
    /// replica is notified (<see cref="KeyRotationsChanged"/>).
    /// </summary>
    ValueTask<long?> TryAddKeyRotationAsync(long expectedVersion, KeyRotation rotation, CancellationToken cancel);

    /// <summary>
    /// Raised when the key rotations may have changed (a notification from any replica, or a reconnection).
    /// Listeners re-read <see cref="GetKeyRotationsAsync"/>.
    /// </summary>
    event Action? KeyRotationsChanged;
}

/// <summary>The state store cannot be reached or answered too slowly. Exchanges answer 503; no token is issued.</summary>
public sealed class StateUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Key layout rules shared by every store.</summary>
public static class StateKeys
{
    /// <summary>Length of the shard tag that prefixes issued-token ids.</summary>
    public const int ShardTagLength = 4;

    /// <summary>
    /// The shard tag of a replay key: its first four hex characters. The issued token's <c>jti</c> starts with the
    /// same tag, so a sharded store (Redis Cluster) can keep the replay mark and the issued-token record in one
    /// hash slot and write both atomically, and can still find the record from the <c>jti</c> alone.
    /// </summary>
    public static string ShardTag(string replayKey)
    {
        ArgumentException.ThrowIfNullOrEmpty(replayKey);
        if (replayKey.Length < ShardTagLength)
        {
            throw new ArgumentException("replay key is too short", nameof(replayKey));
        }

        return replayKey[..ShardTagLength];
    }

    /// <summary>True when <paramref name="jti"/> carries a shard tag (four lower-case hex characters).</summary>
    public static bool HasShardTag(string jti) =>
        jti.Length > ShardTagLength && IsLowerHex(jti.AsSpan(0, ShardTagLength));

    /// <summary>True when every character of <paramref name="text"/> is a lower-case hex digit.</summary>
    internal static bool IsLowerHex(ReadOnlySpan<char> text) => text.IndexOfAnyExcept(LowerHex) < 0;

    private static readonly System.Buffers.SearchValues<char> LowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");
}
