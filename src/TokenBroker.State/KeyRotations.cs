namespace TokenBroker.State;

/// <summary>
/// An operator's key rotation: the pre-provisioned standby key <see cref="KeyId"/> signs from
/// <see cref="ActivateAt"/> (it is published an announcement lead time earlier), and the key of its algorithm that
/// was active until then retires at that instant. Recorded once in the shared state store; every replica computes
/// its key schedule from its configuration plus these records, so all replicas publish the same JWKS and agree on
/// the active key.
/// </summary>
public sealed record KeyRotation
{
    /// <summary>The configured <c>KeyId</c> of the standby key that takes over.</summary>
    public required string KeyId { get; init; }

    public required string Algorithm { get; init; }

    /// <summary>When the key starts signing: the request time plus the announcement lead time.</summary>
    public required DateTimeOffset ActivateAt { get; init; }

    public required DateTimeOffset RequestedAt { get; init; }

    /// <summary>The admin credential name that asked for the rotation.</summary>
    public required string RequestedBy { get; init; }

    /// <summary>The key that was to sign at <see cref="ActivateAt"/> when the rotation was recorded (for the record; not used to compute states).</summary>
    public string? RetiringKeyId { get; init; }

    /// <summary>Why (free text from the operator, bounded).</summary>
    public string? Reason { get; init; }
}

/// <summary>Every recorded rotation with the record's version (a counter that grows with every change).</summary>
public sealed record KeyRotationSet(long Version, IReadOnlyList<KeyRotation> Rotations)
{
    public static KeyRotationSet Empty { get; } = new(0, []);
}
