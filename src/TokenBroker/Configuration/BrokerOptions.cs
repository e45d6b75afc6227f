using TokenBroker.Rules.Providers;
using TokenBroker.State.Redis;

namespace TokenBroker.Configuration;

/// <summary>
/// All broker settings, bound from the <c>TokenBroker</c> configuration section (JSON file given with
/// <c>--config</c>, environment variables <c>TokenBroker__...</c>, command-line <c>--TokenBroker:...=...</c>).
/// Unknown keys are errors, so a typo cannot silently fall back to a default.
/// </summary>
public sealed class BrokerOptions
{
    public const string SectionName = "TokenBroker";

    /// <summary>
    /// The broker's issuer URL: the <c>iss</c> of every issued token and the base of discovery. Default: derived from
    /// the first listen URL, <c>http://127.0.0.1:8080</c> when none is set. Must be https unless the host is loopback.
    /// </summary>
    public string? Issuer { get; set; }

    /// <summary>CI token issuers the broker trusts, by name (the name rules use). Default: <c>github</c> and <c>gitlab</c> (gitlab.com).</summary>
    public Dictionary<string, ProviderOptions> Providers { get; set; } = new(StringComparer.Ordinal);

    public RulesOptions Rules { get; set; } = new();

    public SigningOptions Signing { get; set; } = new();

    public StateOptions State { get; set; } = new();

    public LimitsOptions Limits { get; set; } = new();

    public ExchangeOptions Exchange { get; set; } = new();

    /// <summary>Who may call the admin API (<c>/admin/...</c>). Default: nobody (every admin call answers 401).</summary>
    public CredentialOptions Admin { get; set; } = new();

    /// <summary>Who may call <c>POST /introspect</c>. Default: nobody (every call answers 401).</summary>
    public CredentialOptions Introspection { get; set; } = new();

    /// <summary>Per-client and per-repository rate limits. Default: on, with the limits stated on each option.</summary>
    public RateLimitOptions RateLimits { get; set; } = new();

    /// <summary>Trusted reverse proxies. Default: none (forwarded headers are ignored).</summary>
    public ProxyOptions Proxy { get; set; } = new();

    /// <summary>HTTPS by Kestrel. Default: none (plain http, or Kestrel's own <c>Kestrel:</c> configuration).</summary>
    public TlsOptions Tls { get; set; } = new();

    /// <summary>Shutdown and readiness. Default: the values stated on each option.</summary>
    public HostingOptions Hosting { get; set; } = new();

    /// <summary>Where audit events go. Default: one JSON line per event on standard output.</summary>
    public AuditOptions Audit { get; set; } = new();

    /// <summary>OpenTelemetry (OTLP) export of metrics and traces. Default: off (no exporter).</summary>
    public TelemetryOptions Telemetry { get; set; } = new();
}

/// <summary>
/// The audit log: one JSON object per line, written by a dedicated writer, never through the application log.
/// </summary>
public sealed class AuditOptions
{
    /// <summary>
    /// <c>stdout</c> or <c>file</c>. With <c>stdout</c> the application log goes to standard error, so the two streams
    /// stay separable. Default: <c>stdout</c>.
    /// </summary>
    public string Sink { get; set; } = "stdout";

    /// <summary>
    /// The audit file for <c>Sink: file</c> (required then, not allowed otherwise). Appended to; created with mode 0600;
    /// reopened on SIGHUP and when it has been renamed or deleted (logrotate), and safe with <c>copytruncate</c>.
    /// Default: none.
    /// </summary>
    public string? Path { get; set; }

    /// <summary>
    /// Events buffered between the request path and the writer (100 to 1,000,000). When the buffer is full, requests
    /// wait for the writer rather than drop an event (counted in <c>tokenbroker.audit.blocked</c>). Default: 10,000.
    /// </summary>
    public int BufferCapacity { get; set; } = 10_000;

    /// <summary>
    /// Under load the writer writes and flushes at most once per this interval, so that a busy broker makes one
    /// write (and one rotation check) per batch of events instead of one per few events; the first event after a
    /// quiet spell is written at once. Events wait at most this long in memory on top of the write itself.
    /// 0 writes whenever events arrive (0 to 1 second). Default: 2 ms.
    /// </summary>
    public TimeSpan FlushInterval { get; set; } = TimeSpan.FromMilliseconds(2);
}

/// <summary>OpenTelemetry export. The <c>TokenBroker</c> meter and activity source exist whether or not it is on.</summary>
public sealed class TelemetryOptions
{
    /// <summary>
    /// The OTLP collector, e.g. <c>http://otel-collector:4318</c> (http/protobuf; <c>/v1/metrics</c> and
    /// <c>/v1/traces</c> are appended) or <c>http://otel-collector:4317</c> (grpc). Default: none (no export).
    /// </summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary><c>grpc</c> or <c>http/protobuf</c>. Default: <c>http/protobuf</c>.</summary>
    public string Protocol { get; set; } = "http/protobuf";

    /// <summary>The <c>service.name</c> resource attribute. Default: <c>tokenbroker</c>.</summary>
    public string ServiceName { get; set; } = "tokenbroker";

    /// <summary>How often metrics are exported (1 second to 10 minutes). Default: 60 seconds.</summary>
    public TimeSpan MetricExportInterval { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Export traces as well as metrics. Default: true.</summary>
    public bool Traces { get; set; } = true;
}

/// <summary>
/// API credentials of one scope, stored only as hashes (<c>name:sha256:salt:hash</c>, made by
/// <c>tokenbroker credentials create</c>). Admin and introspection credentials are separate scopes.
/// </summary>
public sealed class CredentialOptions
{
    /// <summary>Credential hash lines. Default: none.</summary>
    public List<string> Credentials { get; set; } = [];

    /// <summary>A file with one credential hash line per line (blank lines and <c>#</c> comments ignored), read at start-up. Default: none.</summary>
    public string? CredentialsFile { get; set; }
}

/// <summary>One trusted CI token issuer.</summary>
public sealed class ProviderOptions
{
    /// <summary>Claim vocabulary: <c>github</c>, <c>gitlab</c> or <c>oidc</c>. Required.</summary>
    public ProviderKind? Kind { get; set; }

    /// <summary>The exact <c>iss</c> value of the provider's tokens, e.g. <c>https://token.actions.githubusercontent.com</c>. Required.</summary>
    public string? Issuer { get; set; }

    /// <summary>The exact <c>aud</c> jobs must request for their job token. Default: the broker's issuer URL.</summary>
    public string? Audience { get; set; }

    /// <summary>The OIDC discovery document. Default: <c>{Issuer}/.well-known/openid-configuration</c>.</summary>
    public string? MetadataAddress { get; set; }

    /// <summary>Allow http:// for discovery and JWKS. For tests only; warned at start-up. Default: false.</summary>
    public bool AllowHttp { get; set; }

    /// <summary>
    /// True when the issuer signs tokens for every tenant, so rules must pin an owner id.
    /// Default: true for <c>https://token.actions.githubusercontent.com</c> and <c>https://gitlab.com</c>, else false.
    /// </summary>
    public bool? SharedIssuer { get; set; }

    /// <summary>Longest accepted <c>exp - iat</c>. Default: 30 minutes for github, 24 hours for gitlab, 1 hour for oidc.</summary>
    public TimeSpan? MaxTokenLifetime { get; set; }

    /// <summary>Signing algorithms accepted from this provider. Default: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512.</summary>
    public List<string> Algorithms { get; set; } = [];

    /// <summary>How long fetched keys are used before a scheduled refresh (at least 5 minutes). Default: 1 hour.</summary>
    public TimeSpan KeyCacheLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// Minimum time between two refreshes caused by an unknown <c>kid</c>, so a flood of random key ids cannot
    /// hammer the provider (at least 1 second). Default: 1 minute.
    /// </summary>
    public TimeSpan UnknownKeyRefreshInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Timeout of one discovery or JWKS request. Default: 5 seconds.</summary>
    public TimeSpan FetchTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Retries (exponential back-off with jitter) of a failed fetch. Default: 2.</summary>
    public int FetchRetries { get; set; } = 2;

    /// <summary>Largest discovery or JWKS response accepted, in bytes. Default: 262,144.</summary>
    public int MaxDocumentBytes { get; set; } = 256 * 1024;

    /// <summary>oidc only: the raw claim names rules may use (besides <c>sub</c>).</summary>
    public List<string> Claims { get; set; } = [];

    /// <summary>oidc only: provider-neutral name to raw claim, e.g. <c>repository: project</c>.</summary>
    public Dictionary<string, string> ClaimMappings { get; set; } = new(StringComparer.Ordinal);

    /// <summary>oidc only: values of the neutral <c>event</c> claim that mean a pull/merge request.</summary>
    public List<string> PullRequestEvents { get; set; } = [];
}

/// <summary>Where the trust rules come from.</summary>
public sealed class RulesOptions
{
    /// <summary>Rule files or directories (their *.yaml and *.yml files in ordinal order). Default: the sample rules built into the executable.</summary>
    public List<string> Paths { get; set; } = [];

    /// <summary>The longest ttl a rule may grant. Default: 1 hour.</summary>
    public TimeSpan MaxTtl { get; set; } = TimeSpan.FromHours(1);

    /// <summary>The ttl of a rule that states none. Default: 5 minutes.</summary>
    public TimeSpan DefaultTtl { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Reload the rules when a configured file or directory changes. SIGHUP reloads in any case. Default: true.</summary>
    public bool Watch { get; set; } = true;

    /// <summary>Quiet time after the last file change before a reload (between 50 ms and 1 minute). Default: 500 ms.</summary>
    public TimeSpan ReloadDebounce { get; set; } = TimeSpan.FromMilliseconds(500);
}

/// <summary>The broker's signing keys.</summary>
public sealed class SigningOptions
{
    /// <summary>
    /// Keys. Each key's dates (ActivateAt, RetireAt, RemoveAt) decide its state at any instant; at most one key per
    /// algorithm is active. Default: one generated ES256 development key.
    /// </summary>
    public List<SigningKeyOptions> Keys { get; set; } = [];

    /// <summary>The algorithm tokens are signed with unless <see cref="AudienceAlgorithms"/> says otherwise. Default: the first key's algorithm.</summary>
    public string? DefaultAlgorithm { get; set; }

    /// <summary>
    /// Audiences whose verifiers need another algorithm, e.g. <c>api://AzureADTokenExchange</c> with RS256 (Azure
    /// federated credentials accept RS256 only). A token for several audiences is signed only when they all map to
    /// the same algorithm; otherwise the exchange is refused with TB1210. Default: none.
    /// </summary>
    public List<AudienceAlgorithmOptions> AudienceAlgorithms { get; set; } = [];

    /// <summary>
    /// How long before its ActivateAt a key is published in the JWKS (between 2 minutes and 30 days). The JWKS
    /// <c>Cache-Control: max-age</c> is half of it (at most 1 day), so verifiers that cached the JWKS just before a key
    /// was published have fetched it again before it signs. Default: 10 minutes (max-age 300 seconds).
    /// </summary>
    public TimeSpan AnnouncementLeadTime { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Least time between two attempts to reopen a PKCS#11 key after it failed to sign (between 100 milliseconds
    /// and 5 minutes); the first attempt after a failure is immediate. Until it reopens, exchanges answer 503
    /// TB1303 and <c>/readyz</c> fails. Default: 5 seconds.
    /// </summary>
    public TimeSpan ReopenInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Rotate on a schedule: the keys of each algorithm (other than Standby keys) form a pool, in configured order;
    /// the first is active from the start and key n (counting from 0) activates at RotateFrom + n x RotateEvery,
    /// published AnnouncementLeadTime earlier. Computed from configuration alone, so replicas agree without
    /// coordinating. When a pool runs out its last key keeps signing (a start-up warning says when); keys are never
    /// reused. Excludes ActivateAt and RetireAt on those keys. Between 1 hour and 3650 days, and longer than
    /// AnnouncementLeadTime. Default: none (dates from ActivateAt/RetireAt and admin rotations only).
    /// </summary>
    public TimeSpan? RotateEvery { get; set; }

    /// <summary>The anchor of <see cref="RotateEvery"/> (ISO 8601 with offset). Required with RotateEvery, not allowed without. Default: none.</summary>
    public DateTimeOffset? RotateFrom { get; set; }
}

/// <summary>One signing key.</summary>
public sealed class SigningKeyOptions
{
    /// <summary>
    /// <c>file</c> (a PEM private key), <c>pkcs11</c> (a key in an HSM, through OpenSSL's pkcs11 engine; Linux only),
    /// <c>aws-kms</c> (an asymmetric AWS KMS key; experimental) or <c>generated</c> (a new key in memory at every start;
    /// development only). Default: file.
    /// </summary>
    public string Source { get; set; } = "file";

    /// <summary>The PEM file, for <c>file</c> keys: EC P-256/P-384 or RSA of at least 2048 bits.</summary>
    public string? Path { get; set; }

    /// <summary>
    /// For <c>pkcs11</c> keys: the RFC 7512 URI of the private key, e.g. <c>pkcs11:token=tb;object=signing-2026</c>
    /// (<c>type=private</c> is added when absent). Must not hold <c>pin-value</c> or <c>pin-source</c>. Required for pkcs11.
    /// </summary>
    public string? Uri { get; set; }

    /// <summary>For <c>aws-kms</c> keys: the KMS key id, key ARN, alias (<c>alias/tokenbroker</c>) or alias ARN. Required for aws-kms.</summary>
    public string? KmsKeyId { get; set; }

    /// <summary>For <c>aws-kms</c> keys: the AWS region, e.g. <c>eu-west-1</c>. Required for aws-kms.</summary>
    public string? Region { get; set; }

    /// <summary>
    /// For <c>aws-kms</c> keys: an endpoint override (a VPC or FIPS endpoint), an absolute https URL (http only for a
    /// loopback address). Default: the region's public endpoint. Credentials always come from the standard AWS chain.
    /// </summary>
    public string? ServiceUrl { get; set; }

    /// <summary>For <c>pkcs11</c> keys: a file holding the user PIN (one trailing newline is ignored). Exactly one of PinFile and PinEnvironmentVariable.</summary>
    public string? PinFile { get; set; }

    /// <summary>For <c>pkcs11</c> keys: the name of an environment variable holding the user PIN. Exactly one of PinFile and PinEnvironmentVariable.</summary>
    public string? PinEnvironmentVariable { get; set; }

    /// <summary>ES256 (default), ES384, RS256 or PS256. Must fit the key.</summary>
    public string Algorithm { get; set; } = "ES256";

    /// <summary>The <c>kid</c>. Default: the key's RFC 7638 thumbprint.</summary>
    public string? KeyId { get; set; }

    /// <summary>
    /// When the key starts signing (ISO 8601 with offset). It is published AnnouncementLeadTime earlier. Default:
    /// active from the start. A later key of the same algorithm takes over at its own ActivateAt.
    /// </summary>
    public DateTimeOffset? ActivateAt { get; set; }

    /// <summary>When the key stops signing. Default: when the next key of its algorithm activates, else never.</summary>
    public DateTimeOffset? RetireAt { get; set; }

    /// <summary>
    /// When the key leaves the JWKS. Default and minimum: its retirement plus Rules:MaxTtl plus the JWKS max-age plus
    /// Exchange:ClockSkew, so that every token it signed can still be verified.
    /// </summary>
    public DateTimeOffset? RemoveAt { get; set; }

    /// <summary>
    /// Held in reserve for <c>POST /admin/keys/rotate</c> (a key generated in the HSM ceremony ahead of need): opened
    /// and checked at start-up, not published and not signing until an admin rotation promotes it. Needs a KeyId
    /// (the rotation names it) and no ActivateAt, RetireAt or RemoveAt. Default: false.
    /// </summary>
    public bool Standby { get; set; }
}

/// <summary>One audience that needs a particular signing algorithm.</summary>
public sealed class AudienceAlgorithmOptions
{
    /// <summary>The exact audience value. Required.</summary>
    public string? Audience { get; set; }

    /// <summary>ES256, ES384, RS256 or PS256; a key of this algorithm must be active. Required.</summary>
    public string? Algorithm { get; set; }
}

/// <summary>Where replay, issued-token, revocation and block state lives.</summary>
public sealed class StateOptions
{
    /// <summary>
    /// <c>memory</c>: one process only, lost on restart (development and tests). <c>redis</c>: shared by every
    /// replica (see <see cref="Redis"/>). Default: memory.
    /// </summary>
    public string Store { get; set; } = "memory";

    /// <summary>The Redis connection, for <c>Store: redis</c>.</summary>
    public RedisStateOptions Redis { get; set; } = new();

    /// <summary>
    /// How often each replica re-reads the blocks even without a change notification (the backstop for lost
    /// pub/sub messages). Between 100 milliseconds and 1 minute. Default: 1 second.
    /// </summary>
    public TimeSpan BlockSyncInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// If the blocks could not be re-read for this long, exchanges and introspection fail closed (503): a block
    /// made meanwhile might be missed. At least 2 x BlockSyncInterval and at most 10 minutes. Default: 10 seconds.
    /// </summary>
    public TimeSpan MaxBlockStaleness { get; set; } = TimeSpan.FromSeconds(10);
}

/// <summary>Size limits, all enforced before any cryptography.</summary>
public sealed class LimitsOptions
{
    /// <summary>Largest request body in bytes. Default: 65,536.</summary>
    public int MaxRequestBodyBytes { get; set; } = 64 * 1024;

    /// <summary>Largest subject token in bytes. Default: 16,384.</summary>
    public int MaxTokenBytes { get; set; } = 16 * 1024;

    /// <summary>Most form fields in one request. Default: 32.</summary>
    public int MaxFormFields { get; set; } = 32;

    /// <summary>Longest form value other than a token, and longest parameter name, in characters. Default: 2,048.</summary>
    public int MaxParameterLength { get; set; } = 2048;

    /// <summary>Most audience plus resource values in one request. Default: 10.</summary>
    public int MaxAudiences { get; set; } = 10;

    /// <summary>Most claims in a job token. Default: 100.</summary>
    public int MaxClaims { get; set; } = 100;

    /// <summary>Deepest JSON nesting in a token header or payload. Default: 8.</summary>
    public int MaxJsonDepth { get; set; } = 8;
}

/// <summary>Exchange behaviour.</summary>
public sealed class ExchangeOptions
{
    /// <summary>Leeway for <c>exp</c>, <c>nbf</c> and <c>iat</c> (at most 60 seconds). Default: 30 seconds.</summary>
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The <c>Retry-After</c> sent with 503 answers, in seconds. Default: 5.</summary>
    public int RetryAfterSeconds { get; set; } = 5;
}

/// <summary>
/// Rate limits. Every limit is a token bucket: up to <see cref="TokenBucketOptions.Burst"/> requests at once, then
/// <see cref="TokenBucketOptions.PerMinute"/> a minute on average; a refused request answers 429 with
/// <c>Retry-After</c> and is never queued. Per-client limits key on the client address (IPv6 by prefix, see
/// <see cref="IPv6PrefixLength"/>), taken from the connection or, behind a configured proxy, from
/// <c>X-Forwarded-For</c> (<see cref="BrokerOptions.Proxy"/>). The per-repository limit runs inside the exchange after
/// the job token's signature has been verified, so forged tokens cannot spend another repository's budget.
/// </summary>
public sealed class RateLimitOptions
{
    /// <summary>Master switch: false turns every rate limit off (benchmarks; not for production). Default: true.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary><c>POST /token</c> per client address. Default: burst 600, 1,200 a minute (CI fleets often share one NAT address).</summary>
    public TokenBucketOptions Token { get; set; } = new() { Burst = 600, PerMinute = 1200 };

    /// <summary><c>POST /revoke</c> per client address. Default: burst 600, 1,200 a minute.</summary>
    public TokenBucketOptions Revoke { get; set; } = new() { Burst = 600, PerMinute = 1200 };

    /// <summary><c>POST /introspect</c> per client address (resource servers may introspect every call). Default: burst 1,000, 6,000 a minute.</summary>
    public TokenBucketOptions Introspect { get; set; } = new() { Burst = 1000, PerMinute = 6000 };

    /// <summary>The admin API (<c>/admin/...</c>) per client address; also slows credential guessing. Default: burst 30, 120 a minute.</summary>
    public TokenBucketOptions Admin { get; set; } = new() { Burst = 30, PerMinute = 120 };

    /// <summary>
    /// Exchanges per provider and repository id (the neutral <c>repository_id</c> claim; the token's <c>sub</c> for a
    /// provider without one), counted only for job tokens whose signature verified, and for downscoping the presented
    /// broker token's repository. Default: burst 300, 600 a minute.
    /// </summary>
    public TokenBucketOptions Repository { get; set; } = new() { Burst = 300, PerMinute = 600 };

    /// <summary>
    /// Most clients (or repositories) each limit tracks at once (between 100 and 1,000,000). Idle entries (full
    /// bucket) are dropped first; beyond the cap, new keys share one overflow bucket of the same size, so memory stays
    /// bounded under a flood of distinct addresses or repository ids. Default: 10,000.
    /// </summary>
    public int MaxTrackedKeys { get; set; } = 10_000;

    /// <summary>IPv6 clients are limited per prefix of this length (between 48 and 128), since one host may hold a whole /64. Default: 64.</summary>
    public int IPv6PrefixLength { get; set; } = 64;
}

/// <summary>One token bucket.</summary>
public sealed class TokenBucketOptions
{
    /// <summary>Requests allowed at once (the bucket size), between 0 and 1,000,000; 0 turns this limit off.</summary>
    public int Burst { get; set; }

    /// <summary>Sustained requests a minute (the refill rate), between 1 and 6,000,000 when Burst is not 0.</summary>
    public int PerMinute { get; set; }
}

/// <summary>
/// Reverse proxies allowed to state the client address (<c>X-Forwarded-For</c>) and scheme
/// (<c>X-Forwarded-Proto</c>). With none configured these headers are ignored. <c>X-Forwarded-Host</c> is never
/// honoured: the issuer and every URL in discovery come from <see cref="BrokerOptions.Issuer"/> only.
/// </summary>
public sealed class ProxyOptions
{
    /// <summary>Addresses of trusted proxies (exact IPv4 or IPv6 addresses). Default: none.</summary>
    public List<string> KnownProxies { get; set; } = [];

    /// <summary>Networks of trusted proxies in CIDR notation, e.g. <c>10.0.0.0/8</c>. Default: none.</summary>
    public List<string> KnownNetworks { get; set; } = [];

    /// <summary>
    /// How many proxy hops to unwind from the right of <c>X-Forwarded-For</c> (between 1 and 10); each hop must itself
    /// be a trusted proxy before the address to its left is believed. Default: 1.
    /// </summary>
    public int ForwardLimit { get; set; } = 1;
}

/// <summary>HTTPS served by the broker itself (Kestrel). Behind a TLS-terminating proxy, leave this unset.</summary>
public sealed class TlsOptions
{
    /// <summary>
    /// PEM certificate (chain) file for every <c>https://</c> listen URL. Re-read when the file changes (checked at
    /// most every 10 seconds), so certificate rotation needs no restart. Default: none.
    /// </summary>
    public string? CertificatePath { get; set; }

    /// <summary>PEM private key file of the certificate (unencrypted PKCS#8, SEC1 or PKCS#1). Required with CertificatePath.</summary>
    public string? KeyPath { get; set; }

    /// <summary>
    /// <c>Strict-Transport-Security</c> max-age sent on https responses, in seconds (0 to 63,072,000; 0 sends no
    /// header). Default: 31,536,000 (one year).
    /// </summary>
    public int HstsMaxAgeSeconds { get; set; } = 31_536_000;
}

/// <summary>Start, readiness and shutdown behaviour.</summary>
public sealed class HostingOptions
{
    /// <summary>
    /// On SIGTERM (or any stop), how long in-flight requests may take to finish before they are cut off (between 1
    /// second and 10 minutes). Readiness answers 503 from the first moment of the stop. Default: 30 seconds.
    /// </summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// On a stop, how long the broker keeps accepting new requests while <c>/readyz</c> already answers 503, so that
    /// load balancers (e.g. Kubernetes endpoints) stop routing to it before the listener closes (between 0 and 1
    /// minute, and less than ShutdownTimeout). 5 to 10 seconds suits Kubernetes. Default: 0 (close at once).
    /// </summary>
    public TimeSpan DrainDelay { get; set; } = TimeSpan.Zero;

    /// <summary>
    /// True: <c>/readyz</c> fails while any provider has no keys at all. False (default): it fails only when no
    /// provider has keys; a provider that cannot be reached is reported as degraded, because its outage would
    /// otherwise take every replica, and every other provider, out of the load balancer at once. Default: false.
    /// </summary>
    public bool RequireAllProviderKeys { get; set; }
}
