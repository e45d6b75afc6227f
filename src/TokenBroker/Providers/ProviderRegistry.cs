using System.Collections.Frozen;
using TokenBroker.Configuration;

namespace TokenBroker.Providers;

/// <summary>
/// The trusted issuers, looked up by exact <c>iss</c>. An unknown issuer is refused from this table alone, with
/// no network call.
/// </summary>
internal sealed class ProviderRegistry
{
    private readonly FrozenDictionary<string, ProviderKeySource> _byIssuer;

    public ProviderRegistry(ResolvedSettings settings, HttpClient client, TimeProvider time, Hosting.BrokerMetrics? metrics = null)
    {
        Sources = settings.Providers.Select(p => new ProviderKeySource(p, client, time, metrics)).ToArray();
        _byIssuer = Sources.ToFrozenDictionary(s => s.Provider.Issuer, StringComparer.Ordinal);
        AllAlgorithms = settings.Providers.SelectMany(p => p.Algorithms).ToFrozenSet(StringComparer.Ordinal);
    }

    public IReadOnlyList<ProviderKeySource> Sources { get; }

    /// <summary>The union of every provider's algorithms; the first, provider-independent allow-list check.</summary>
    public IReadOnlySet<string> AllAlgorithms { get; }

    public ProviderKeySource? FindByIssuer(string issuer) => _byIssuer.GetValueOrDefault(issuer);

    /// <summary>The HTTP client used for every provider fetch: no redirects, no cookies, no proxy surprises.</summary>
    public static HttpClient CreateHttpClient() => new(new SocketsHttpHandler
    {
        AllowAutoRedirect = false,
        UseCookies = false,
        ConnectTimeout = TimeSpan.FromSeconds(5),
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        MaxResponseHeadersLength = 64,
    })
    {
        Timeout = Timeout.InfiniteTimeSpan,
    };
}
