namespace TokenBroker.Audit;

/// <summary>
/// One audited decision. Written for every exchange, granted or refused (from a <c>finally</c>), every revocation and
/// introspection request and every admin API call (types <c>exchange</c>, <c>revoke</c>, <c>introspect</c>,
/// <c>admin.revoke</c>, <c>admin.block.create</c>, <c>admin.block.list</c>, <c>admin.block.delete</c>,
/// <c>admin.rules.reload</c>; a refused call has <c>outcome: refused</c>). Tokens never appear: only a token's SHA-256
/// and the issued token's <c>jti</c>; credentials appear by name only. The schema is in docs/audit.md.
/// </summary>
public sealed class AuditEvent
{
    public required string Type { get; init; }
    public required string RequestId { get; init; }
    public required DateTimeOffset Time { get; init; }
    public string? ClientIp { get; init; }
    public string? Provider { get; set; }
    public string? RepositoryId { get; set; }
    public string? Repository { get; set; }
    public string? RunId { get; set; }

    /// <summary>The job token's <c>runner_environment</c> claim (<c>github-hosted</c>, <c>self-hosted</c>, ...), when present.</summary>
    public string? RunnerEnvironment { get; set; }
    public string? JobTokenJti { get; set; }
    public string? JobTokenSha256 { get; set; }

    /// <summary>For a downscoping exchange: the <c>jti</c> of the broker token that was narrowed.</summary>
    public string? ParentJti { get; set; }
    public string? Rule { get; set; }
    public IReadOnlyList<string>? RequestedAudiences { get; set; }
    public IReadOnlyList<string>? GrantedAudiences { get; set; }
    public IReadOnlyList<string>? RequestedScopes { get; set; }
    public IReadOnlyList<string>? GrantedScopes { get; set; }
    public string Outcome { get; set; } = "error";
    public string? ErrorId { get; set; }
    public string? ErrorCode { get; set; }

    /// <summary>The full reason, for operators only.</summary>
    public string? Detail { get; set; }

    /// <summary>
    /// For a refusal by the trust rules: the same structured explanation <c>tokenbroker rules explain --format json</c>
    /// prints (every rule, every condition with expected and actual value, the refusal). Operators only; never in
    /// the HTTP response.
    /// </summary>
    public System.Text.Json.JsonElement? Explanation { get; set; }
    public string? IssuedJti { get; set; }
    public DateTimeOffset? IssuedExpiresAt { get; set; }

    /// <summary><c>revoke</c>: the SHA-256 of the presented token (never the token).</summary>
    public string? TokenSha256 { get; set; }

    /// <summary>Admin API: the name of the credential that acted.</summary>
    public string? Actor { get; set; }

    /// <summary>Admin API: the block id acted on.</summary>
    public string? BlockId { get; set; }

    /// <summary>Admin API: the selector of a created block.</summary>
    public TokenBroker.State.BlockSelector? Selector { get; set; }
    public double LatencyMs { get; set; }

    /// <summary>Hex SHA-256 of a token, the only form in which tokens reach logs.</summary>
    public static string Hash(string token) => Security.Sha256Text.Hex(token);
}

/// <summary>
/// Where audit events go. The broker's sink is <see cref="AuditLogWriter"/> (one JSON line per event on standard output
/// or in a file); tests and the demo substitute a memory sink.
/// </summary>
public interface IAuditSink
{
    void Write(AuditEvent auditEvent);
}
