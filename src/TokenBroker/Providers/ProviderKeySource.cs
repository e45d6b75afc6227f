using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Configuration;

namespace TokenBroker.Providers;

/// <summary>
/// One provider's signing keys, from OIDC discovery + JWKS through IdentityModel's <see cref="ConfigurationManager{T}"/>
/// (which caches, refreshes on schedule and keeps the last good keys when the provider fails). On an unknown
/// <c>kid</c> it refreshes at most once per <see cref="ResolvedProvider.UnknownKeyRefreshInterval"/>.
/// </summary>
internal sealed class ProviderKeySource
{
    static ProviderKeySource()
    {
        // Make RequestRefresh() + GetConfigurationAsync() fetch in the caller's flow rather than in the background,
        // so the request that saw a new kid is the one that gets the new keys.
        AppContext.SetSwitch("Switch.Microsoft.IdentityModel.UpdateConfigAsBlocking", true);
    }

    private readonly ConfigurationManager<OpenIdConnectConfiguration> _manager;
    private readonly TimeProvider _time;
    private readonly TimeSpan _unknownKidInterval;
    private readonly Lock _gate = new();
    private long _lastForcedRefresh = long.MinValue;
    private OpenIdConnectConfiguration? _indexedFor;
    private Dictionary<string, List<JsonWebKey>> _byKid = new(StringComparer.Ordinal);

    private readonly Hosting.BrokerMetrics? _metrics;

    public ProviderKeySource(ResolvedProvider provider, HttpClient client, TimeProvider time, Hosting.BrokerMetrics? metrics = null)
    {
        Provider = provider;
        _metrics = metrics;
        _time = time;
        _unknownKidInterval = provider.UnknownKeyRefreshInterval;
        Retriever = new BoundedDocumentRetriever(client, provider, time);
        _manager = new ConfigurationManager<OpenIdConnectConfiguration>(
            provider.MetadataAddress,
            new IssuerCheckingRetriever(provider.Issuer, this),
            Retriever)
        {
            AutomaticRefreshInterval = provider.KeyCacheLifetime,
            RefreshInterval = ConfigurationManager<OpenIdConnectConfiguration>.MinimumRefreshInterval,
        };
    }

    public ResolvedProvider Provider { get; }

    /// <summary>Why the last fetch failed, or null after a success (operator detail for 503s).</summary>
    internal string? LastFailure { get; private set; }

    /// <summary>When the last fetch failed (null after a success); readiness reports it.</summary>
    internal DateTimeOffset? LastFailureAt { get; private set; }

    /// <summary>When keys were last fetched successfully; null while the cache is cold.</summary>
    internal DateTimeOffset? LastSuccessAt { get; private set; }

    /// <summary>How many keys the last successful fetch returned.</summary>
    internal int KeyCount { get; private set; }

    internal BoundedDocumentRetriever Retriever { get; }

    /// <summary>Keys published under <paramref name="kid"/>, refreshing once (rate-limited) when the kid is unknown.</summary>
    public async ValueTask<KeyLookup> FindAsync(string kid, CancellationToken cancel)
    {
        OpenIdConnectConfiguration configuration;
        try
        {
            configuration = await _manager.GetConfigurationAsync(cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or HttpRequestException)
        {
            return KeyLookup.Unavailable(LastFailure ?? e.Message);
        }

        var keys = Lookup(configuration, kid);
        if (keys is not null)
        {
            return KeyLookup.Found(keys);
        }

        if (!TryStartForcedRefresh())
        {
            return KeyLookup.UnknownKid(refreshed: false);
        }

        var failuresBefore = Retriever.FailureCount;
        _manager.RequestRefresh();
        try
        {
            configuration = await _manager.GetConfigurationAsync(cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or HttpRequestException)
        {
            return KeyLookup.Unavailable(LastFailure ?? e.Message);
        }

        keys = Lookup(configuration, kid);
        if (keys is not null)
        {
            return KeyLookup.Found(keys);
        }

        // ConfigurationManager answers with the last good keys when the refresh fails. A kid we could not look up
        // because the provider is down is a 503 to retry, not a 400 that tells the job its token is bad.
        return Retriever.FailureCount > failuresBefore
            ? KeyLookup.Unavailable($"refresh for an unknown kid failed: {LastFailure}")
            : KeyLookup.UnknownKid(refreshed: true);
    }

    /// <summary>Loads the keys now (start-up warm-up and readiness). Returns false when the provider cannot be reached.</summary>
    public async Task<bool> WarmUpAsync(CancellationToken cancel)
    {
        try
        {
            await _manager.GetConfigurationAsync(cancel).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or HttpRequestException)
        {
            return false;
        }
    }

    private bool TryStartForcedRefresh()
    {
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            if (_lastForcedRefresh != long.MinValue && _time.GetElapsedTime(_lastForcedRefresh, now) < _unknownKidInterval)
            {
                return false;
            }

            _lastForcedRefresh = now;
            return true;
        }
    }

    private List<JsonWebKey>? Lookup(OpenIdConnectConfiguration configuration, string kid)
    {
        Dictionary<string, List<JsonWebKey>> index;
        lock (_gate)
        {
            if (!ReferenceEquals(_indexedFor, configuration))
            {
                var fresh = new Dictionary<string, List<JsonWebKey>>(StringComparer.Ordinal);
                foreach (var key in configuration.JsonWebKeySet?.Keys ?? [])
                {
                    if (string.IsNullOrEmpty(key.Kid) || (!string.IsNullOrEmpty(key.Use) && key.Use != "sig"))
                    {
                        continue;
                    }

                    if (!fresh.TryGetValue(key.Kid, out var list))
                    {
                        fresh[key.Kid] = list = [];
                    }

                    list.Add(key);
                }

                _byKid = fresh;
                _indexedFor = configuration;
            }

            index = _byKid;
        }

        return index.GetValueOrDefault(kid);
    }

    /// <summary>Retrieves discovery + JWKS and insists that the discovery document names exactly the configured issuer.</summary>
    private sealed class IssuerCheckingRetriever(string issuer, ProviderKeySource owner) : IConfigurationRetriever<OpenIdConnectConfiguration>
    {
        public async Task<OpenIdConnectConfiguration> GetConfigurationAsync(string address, IDocumentRetriever retriever, CancellationToken cancel)
        {
            try
            {
                var configuration = await FetchAsync(address, retriever, cancel).ConfigureAwait(false);
                owner.LastFailure = null;
                owner._metrics?.JwksRefreshed(owner.Provider.Name, ok: true);
                owner.LastFailureAt = null;
                owner.KeyCount = configuration.JsonWebKeySet.Keys.Count;
                owner.LastSuccessAt = owner._time.GetUtcNow();
                return configuration;
            }
            catch (Exception e)
            {
                // ConfigurationManager keeps only a generic message for later callers; keep the cause for operators.
                owner.LastFailure = e.InnerException is null ? e.Message : $"{e.Message} ({e.InnerException.Message})";
                owner._metrics?.JwksRefreshed(owner.Provider.Name, ok: false);
                owner.LastFailureAt = owner._time.GetUtcNow();
                throw;
            }
        }

        private async Task<OpenIdConnectConfiguration> FetchAsync(string address, IDocumentRetriever retriever, CancellationToken cancel)
        {
            var configuration = await OpenIdConnectConfigurationRetriever.GetAsync(address, retriever, cancel).ConfigureAwait(false);
            if (!string.Equals(configuration.Issuer, issuer, StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"discovery document at '{address}' names issuer '{configuration.Issuer}', not '{issuer}'");
            }

            if (configuration.JsonWebKeySet is null || configuration.JsonWebKeySet.Keys.Count == 0)
            {
                throw new InvalidOperationException($"provider '{issuer}' publishes no keys");
            }

            return configuration;
        }
    }
}

/// <summary>The result of a key lookup.</summary>
internal readonly record struct KeyLookup(IReadOnlyList<JsonWebKey>? Keys, bool IsUnavailable, bool Refreshed, string? Detail)
{
    public static KeyLookup Found(IReadOnlyList<JsonWebKey> keys) => new(keys, false, false, null);

    public static KeyLookup UnknownKid(bool refreshed) => new(null, false, refreshed, null);

    public static KeyLookup Unavailable(string detail) => new(null, true, false, detail);
}
