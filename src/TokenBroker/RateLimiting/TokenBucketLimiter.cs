using System.Threading.RateLimiting;
using TokenBroker.Configuration;

namespace TokenBroker.RateLimiting;

/// <summary>
/// Token buckets by string key, with bounded memory: at most <c>maxKeys</c> buckets. A bucket that has refilled
/// completely carries no information and is dropped by the next sweep; when the table is full of buckets still
/// refilling, further keys share one overflow bucket rather than growing the table. Time comes from
/// <see cref="TimeProvider"/>, so tests can drive it. Nothing is ever queued: a request either gets a permit now or a
/// refusal with <see cref="MetadataName.RetryAfter"/>.
/// </summary>
/// <remarks>
/// The stock <see cref="PartitionedRateLimiter.Create{TResource, TPartitionKey}"/> drops idle partitions after ten
/// seconds but has no ceiling, and reads the wall clock; a flood of distinct IPv6 addresses or repository ids must not
/// be able to grow the process without limit.
/// </remarks>
internal sealed class TokenBucketLimiter : PartitionedRateLimiter<string>
{
    /// <summary>Periodic sweep of full buckets, so memory shrinks after a burst of many keys.</summary>
    private static readonly TimeSpan SweepInterval = TimeSpan.FromSeconds(30);

    /// <summary>A full table is swept at most this often, so a flood of new keys does not cost O(n) each.</summary>
    private static readonly TimeSpan FullSweepInterval = TimeSpan.FromSeconds(1);

    private readonly Dictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);
    private readonly Bucket _overflow;
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly double _perSecond;
    private long _lastSweep;

    public TokenBucketLimiter(string name, TokenBucketOptions options, int maxKeys, TimeProvider time)
    {
        Name = name;
        Burst = options.Burst;
        PerMinute = options.PerMinute;
        MaxKeys = maxKeys;
        _time = time;
        _perSecond = options.PerMinute / 60.0;
        _lastSweep = time.GetTimestamp();
        _overflow = new Bucket { Tokens = Burst, Stamp = _lastSweep };
    }

    /// <summary>The limit's configuration name, e.g. <c>Token</c> (for audit details and docs).</summary>
    public string Name { get; }

    public int Burst { get; }

    public int PerMinute { get; }

    public int MaxKeys { get; }

    /// <summary>Buckets held now (tests and diagnostics).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _buckets.Count;
            }
        }
    }

    /// <summary>True when the last acquisition for a new key had to use the shared overflow bucket.</summary>
    public long OverflowAcquisitions { get; private set; }

    /// <summary>A readable description for audit details: <c>RateLimits:Token (burst 600, 1200/minute)</c>.</summary>
    public string Describe() => $"RateLimits:{Name} (burst {Burst}, {PerMinute}/minute)";

    public override RateLimiterStatistics? GetStatistics(string resource)
    {
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            var bucket = _buckets.GetValueOrDefault(resource);
            return new RateLimiterStatistics { CurrentAvailablePermits = bucket is null ? Burst : (long)Refilled(bucket, now) };
        }
    }

    protected override RateLimitLease AttemptAcquireCore(string resource, int permitCount)
    {
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            var bucket = Find(resource, now);
            bucket.Tokens = Refilled(bucket, now);
            bucket.Stamp = now;
            if (bucket.Tokens >= permitCount)
            {
                bucket.Tokens -= permitCount;
                return BucketLease.Granted;
            }

            // Whole seconds, rounded up (Retry-After has no fractions), never 0.
            var wait = Math.Max(1, Math.Ceiling((permitCount - bucket.Tokens) / _perSecond));
            return new BucketLease(false, TimeSpan.FromSeconds(wait));
        }
    }

    protected override ValueTask<RateLimitLease> AcquireAsyncCore(string resource, int permitCount, CancellationToken cancellationToken) =>
        ValueTask.FromResult(AttemptAcquireCore(resource, permitCount));

    private double Refilled(Bucket bucket, long now) =>
        Math.Min(Burst, bucket.Tokens + (_time.GetElapsedTime(bucket.Stamp, now).TotalSeconds * _perSecond));

    private Bucket Find(string key, long now)
    {
        if (_buckets.TryGetValue(key, out var bucket))
        {
            return bucket;
        }

        var sinceSweep = _time.GetElapsedTime(_lastSweep, now);
        if (sinceSweep >= SweepInterval || (_buckets.Count >= MaxKeys && sinceSweep >= FullSweepInterval))
        {
            Sweep(now);
        }

        if (_buckets.Count >= MaxKeys)
        {
            OverflowAcquisitions++;
            return _overflow;
        }

        bucket = new Bucket { Tokens = Burst, Stamp = now };
        _buckets[key] = bucket;
        return bucket;
    }

    private void Sweep(long now)
    {
        _lastSweep = now;
        List<string>? full = null;
        foreach (var (key, bucket) in _buckets)
        {
            if (Refilled(bucket, now) >= Burst)
            {
                (full ??= []).Add(key);
            }
        }

        foreach (var key in full ?? [])
        {
            _buckets.Remove(key);
        }
    }

    private sealed class Bucket
    {
        public double Tokens;
        public long Stamp;
    }
}

/// <summary>A permit, or a refusal that says when to retry.</summary>
internal sealed class BucketLease(bool acquired, TimeSpan? retryAfter) : RateLimitLease
{
    private static readonly string[] RetryAfterOnly = [MetadataName.RetryAfter.Name];

    public static BucketLease Granted { get; } = new(true, null);

    public override bool IsAcquired => acquired;

    public override IEnumerable<string> MetadataNames => retryAfter is null ? [] : RetryAfterOnly;

    public override bool TryGetMetadata(string metadataName, out object? metadata)
    {
        if (retryAfter is { } value && metadataName == MetadataName.RetryAfter.Name)
        {
            metadata = value;
            return true;
        }

        metadata = null;
        return false;
    }
}
