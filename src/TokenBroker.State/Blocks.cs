namespace TokenBroker.State;

/// <summary>
/// What a block matches. Every field that is set must equal the token's value exactly (ordinal); fields left null
/// match anything. At least one field must be set. With <see cref="IssuedBefore"/>, only tokens issued (and
/// exchanges attempted) before that instant match.
/// </summary>
public sealed record BlockSelector
{
    public string? Provider { get; init; }
    public string? RepositoryId { get; init; }
    public string? OwnerId { get; init; }
    public string? RuleId { get; init; }
    public string? RunId { get; init; }
    public DateTimeOffset? IssuedBefore { get; init; }

    /// <summary>True when no matching field is set (such a selector is refused: it would block everything).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool IsEmpty => Provider is null && RepositoryId is null && OwnerId is null && RuleId is null && RunId is null;

    /// <summary>Whether a token (issued, or about to be issued, at <paramref name="issuedAt"/>) matches.</summary>
    public bool Matches(string provider, string? repositoryId, string? ownerId, string rule, string? runId, DateTimeOffset issuedAt) =>
        !IsEmpty &&
        Same(Provider, provider) &&
        Same(RepositoryId, repositoryId) &&
        Same(OwnerId, ownerId) &&
        Same(RuleId, rule) &&
        Same(RunId, runId) &&
        (IssuedBefore is null || issuedAt < IssuedBefore.Value);

    /// <summary>A set field matches only an equal, present value: a token without a repository id never matches a repository block.</summary>
    private static bool Same(string? wanted, string? actual) => wanted is null || (actual is not null && string.Equals(wanted, actual, StringComparison.Ordinal));
}

/// <summary>An operator's block: refuses matching exchanges and makes matching issued tokens inactive.</summary>
public sealed record Block
{
    public required string Id { get; init; }
    public required BlockSelector Selector { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>The admin credential name that created it.</summary>
    public required string CreatedBy { get; init; }

    /// <summary>Why (free text from the operator, bounded).</summary>
    public string? Reason { get; init; }
}

/// <summary>A consistent snapshot of all blocks.</summary>
public sealed record BlockSet(long Version, IReadOnlyList<Block> Blocks)
{
    public static BlockSet Empty { get; } = new(0, []);

    /// <summary>The first block matching the token, or null.</summary>
    public Block? FindMatch(string provider, string? repositoryId, string? ownerId, string rule, string? runId, DateTimeOffset issuedAt)
    {
        foreach (var block in Blocks)
        {
            if (block.Selector.Matches(provider, repositoryId, ownerId, rule, runId, issuedAt))
            {
                return block;
            }
        }

        return null;
    }

    public Block? FindMatch(IssuedTokenRecord record) =>
        FindMatch(record.Provider, record.RepositoryId, record.OwnerId, record.Rule, record.RunId, record.IssuedAt);
}
