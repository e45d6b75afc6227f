using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.RateLimiting;
using TokenBroker.Audit;
using TokenBroker.Configuration;
using TokenBroker.Errors;
using TokenBroker.Exchange;

namespace TokenBroker.RateLimiting;

/// <summary>Endpoint metadata: this endpoint is limited per client address by the named limit.</summary>
/// <param name="Limit">The limit's name under <c>RateLimits</c>: Token, Revoke, Introspect or Admin.</param>
/// <param name="AuditType">The audit event type a refusal is recorded as (that of the endpoint).</param>
internal sealed record ClientRateLimit(string Limit, string AuditType);

/// <summary>
/// Per-client limits, run by ASP.NET Core's rate-limiting middleware as its global limiter. Each endpoint names its
/// limit in <see cref="ClientRateLimit"/> metadata; endpoints without it (health, discovery, JWKS) are not limited.
/// The key is the client address after trusted-proxy handling (TrustedProxies), so behind a trusted proxy it is the
/// forwarded client and never an address an untrusted peer claims.
/// </summary>
internal sealed class ClientRateLimiter : PartitionedRateLimiter<HttpContext>
{
    private readonly Dictionary<string, TokenBucketLimiter> _limits = new(StringComparer.Ordinal);
    private readonly int _ipv6Prefix;

    public ClientRateLimiter(RateLimitOptions options, TimeProvider time)
    {
        _ipv6Prefix = options.IPv6PrefixLength;
        if (!options.Enabled)
        {
            return;
        }

        foreach (var (name, bucket) in new[] { ("Token", options.Token), ("Revoke", options.Revoke), ("Introspect", options.Introspect), ("Admin", options.Admin) })
        {
            if (bucket.Burst > 0)
            {
                _limits[name] = new TokenBucketLimiter(name, bucket, options.MaxTrackedKeys, time);
            }
        }
    }

    /// <summary>The limit for <paramref name="http"/>'s endpoint and the client key, or nulls when it is not limited.</summary>
    public (TokenBucketLimiter? Limit, string Key, ClientRateLimit? Metadata) Resolve(HttpContext http)
    {
        var metadata = http.GetEndpoint()?.Metadata.GetMetadata<ClientRateLimit>();
        if (metadata is null || !_limits.TryGetValue(metadata.Limit, out var limit))
        {
            return (null, string.Empty, metadata);
        }

        return (limit, ClientKey(http.Connection.RemoteIpAddress, _ipv6Prefix), metadata);
    }

    /// <summary>
    /// The client's bucket key: an IPv4 address as is (also when IPv4-mapped), an IPv6 address cut to its prefix,
    /// since a single host is commonly given a whole /64.
    /// </summary>
    internal static string ClientKey(IPAddress? address, int ipv6Prefix)
    {
        if (address is null)
        {
            return "unknown";
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (address.AddressFamily != AddressFamily.InterNetworkV6 || ipv6Prefix >= 128)
        {
            return address.ToString();
        }

        var bytes = address.GetAddressBytes();
        for (var bit = ipv6Prefix; bit < 128; bit++)
        {
            bytes[bit / 8] &= (byte)~(0x80 >> (bit % 8));
        }

        return new IPAddress(bytes).ToString() + "/" + ipv6Prefix.ToString(CultureInfo.InvariantCulture);
    }

    public override RateLimiterStatistics? GetStatistics(HttpContext resource)
    {
        var (limit, key, _) = Resolve(resource);
        return limit?.GetStatistics(key);
    }

    protected override RateLimitLease AttemptAcquireCore(HttpContext resource, int permitCount)
    {
        var (limit, key, _) = Resolve(resource);
        return limit is null ? BucketLease.Granted : limit.AttemptAcquire(key, permitCount);
    }

    protected override ValueTask<RateLimitLease> AcquireAsyncCore(HttpContext resource, int permitCount, CancellationToken cancellationToken) =>
        ValueTask.FromResult(AttemptAcquireCore(resource, permitCount));
}

/// <summary>Wires the per-client limits into ASP.NET Core's rate limiter and answers refusals as OAuth errors.</summary>
internal static class ClientRateLimits
{
    public static IServiceCollection AddClientRateLimits(this IServiceCollection services, ResolvedSettings settings, TimeProvider time)
    {
        var limiter = new ClientRateLimiter(settings.RateLimits, time);
        services.AddSingleton(limiter);
        services.AddRateLimiter(options =>
        {
            options.GlobalLimiter = limiter;
            options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            options.OnRejected = (context, cancel) => new ValueTask(RejectAsync(context));
        });
        return services;
    }

    /// <summary>Limits this endpoint per client address with the named limit.</summary>
    public static TBuilder LimitPerClient<TBuilder>(this TBuilder builder, string limit, string auditType)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new ClientRateLimit(limit, auditType));

    private static async Task RejectAsync(OnRejectedContext context)
    {
        var http = context.HttpContext;
        var services = http.RequestServices;
        var limiter = services.GetRequiredService<ClientRateLimiter>();
        var time = services.GetRequiredService<TimeProvider>();
        var (limit, key, metadata) = limiter.Resolve(http);
        var retryAfter = RetryAfterSeconds(context.Lease);
        var audit = new AuditEvent
        {
            Type = metadata?.AuditType ?? "request",
            RequestId = http.TraceIdentifier,
            Time = time.GetUtcNow(),
            ClientIp = http.Connection.RemoteIpAddress?.ToString(),
            Outcome = "refused",
            ErrorId = BrokerErrors.ClientRateLimited.Id,
            ErrorCode = BrokerErrors.ClientRateLimited.Code,
            Detail = $"{limit?.Describe() ?? "rate limit"} exceeded by client {key}; retry after {retryAfter} s",
        };
        try
        {
            await TokenEndpoints.WriteErrorAsync(http, BrokerErrors.ClientRateLimited, retryAfter).ConfigureAwait(false);
        }
        finally
        {
            services.GetRequiredService<IAuditSink>().Write(audit);
        }
    }

    /// <summary>The lease's Retry-After in whole seconds, rounded up; 1 when it has none.</summary>
    internal static int RetryAfterSeconds(RateLimitLease lease) =>
        lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? (int)Math.Clamp(Math.Ceiling(wait.TotalSeconds), 1, 3600) : 1;
}
