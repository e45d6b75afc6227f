using System.Net.Http.Headers;
using System.Text.Json;

namespace TokenBroker.Client;

/// <summary>Requests the job's OIDC token on a GitHub Actions runner (needs <c>permissions: id-token: write</c>).</summary>
public static class GitHubActionsJobToken
{
    /// <summary>The job token for <paramref name="audience"/> (the broker's issuer URL).</summary>
    /// <exception cref="InvalidOperationException">Not on a runner, or the job lacks <c>id-token: write</c>.</exception>
    public static async Task<string> RequestAsync(HttpClient http, string audience, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(http);
        var url = Environment.GetEnvironmentVariable("ACTIONS_ID_TOKEN_REQUEST_URL");
        var bearer = Environment.GetEnvironmentVariable("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
        if (string.IsNullOrEmpty(url) || string.IsNullOrEmpty(bearer))
        {
            throw new InvalidOperationException("ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN are not set: run on GitHub Actions with 'permissions: id-token: write'");
        }

        var separator = url.Contains('?', StringComparison.Ordinal) ? '&' : '?';
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{url}{separator}audience={Uri.EscapeDataString(audience)}");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"the Actions token endpoint answered {(int)response.StatusCode}");
        }

        using var json = JsonDocument.Parse(body);
        return json.RootElement.TryGetProperty("value", out var value) && value.GetString() is { Length: > 0 } token
            ? token
            : throw new InvalidOperationException("the Actions token endpoint returned no token");
    }
}
