using System.Net;
using Microsoft.IdentityModel.Protocols;
using Polly;
using Polly.Retry;
using Polly.Timeout;
using TokenBroker.Configuration;

namespace TokenBroker.Providers;

/// <summary>
/// Fetches discovery and JWKS documents for one provider: https only (unless the provider allows http), no
/// redirects, a per-attempt timeout, a response-size cap checked while reading, and retries with jittered
/// exponential back-off for transient failures.
/// </summary>
internal sealed class BoundedDocumentRetriever : IDocumentRetriever
{
    private readonly HttpClient _client;
    private readonly ResolvedProvider _provider;
    private readonly ResiliencePipeline _pipeline;

    public BoundedDocumentRetriever(HttpClient client, ResolvedProvider provider, TimeProvider time)
    {
        _client = client;
        _provider = provider;
        var builder = new ResiliencePipelineBuilder { TimeProvider = time };
        if (provider.FetchRetries > 0)
        {
            builder.AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = provider.FetchRetries,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromMilliseconds(200),
                ShouldHandle = new PredicateBuilder().Handle<HttpRequestException>().Handle<TimeoutRejectedException>().Handle<TransientFetchException>(),
            });
        }

        builder.AddTimeout(provider.FetchTimeout);
        _pipeline = builder.Build();
    }

    /// <summary>Number of HTTP requests sent, for tests and metrics.</summary>
    public int RequestCount => _requests;

    private int _requests;

    public async Task<string> GetDocumentAsync(string address, CancellationToken cancel)
    {
        if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) ||
            !(uri.Scheme == Uri.UriSchemeHttps || (_provider.AllowHttp && uri.Scheme == Uri.UriSchemeHttp)))
        {
            throw new IOException($"refusing to fetch '{address}' for provider '{_provider.Name}': https is required");
        }

        try
        {
            return await FetchAsync(uri, address, cancel).ConfigureAwait(false);
        }
        catch
        {
            Interlocked.Increment(ref _failures);
            throw;
        }
    }

    /// <summary>Fetches that failed after all retries, for telling a stale answer from a fresh one.</summary>
    public int FailureCount => Volatile.Read(ref _failures);

    private int _failures;

    private async Task<string> FetchAsync(Uri uri, string address, CancellationToken cancel)
    {
        return await _pipeline.ExecuteAsync(
            async ct =>
            {
                Interlocked.Increment(ref _requests);
                using var request = new HttpRequestMessage(HttpMethod.Get, uri);
                request.Headers.Accept.ParseAdd("application/json");
                using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
                if ((int)response.StatusCode >= 500 || response.StatusCode == HttpStatusCode.TooManyRequests)
                {
                    throw new TransientFetchException($"'{address}' answered {(int)response.StatusCode}");
                }

                if (response.StatusCode != HttpStatusCode.OK)
                {
                    throw new IOException($"'{address}' answered {(int)response.StatusCode}");
                }

                if (response.Content.Headers.ContentLength > _provider.MaxDocumentBytes)
                {
                    throw new IOException($"'{address}' declares {response.Content.Headers.ContentLength} bytes; the limit is {_provider.MaxDocumentBytes}");
                }

                await using var stream = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                using var buffer = new MemoryStream();
                var chunk = new byte[16 * 1024];
                int read;
                while ((read = await stream.ReadAsync(chunk, ct).ConfigureAwait(false)) > 0)
                {
                    if (buffer.Length + read > _provider.MaxDocumentBytes)
                    {
                        throw new IOException($"'{address}' sent more than {_provider.MaxDocumentBytes} bytes");
                    }

                    buffer.Write(chunk, 0, read);
                }

                return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
            },
            cancel).ConfigureAwait(false);
    }

    private sealed class TransientFetchException(string message) : IOException(message);
}
