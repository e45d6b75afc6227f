using TokenBroker.Client;

// Usage (in a GitHub Actions job with `permissions: id-token: write`):
//   dotnet run --project samples/dotnet-client -- https://sts.ci.example.com https://deploy.internal/payments
// Elsewhere, pass the CI job token in TOKENBROKER_JOB_TOKEN (e.g. a GitLab id_token variable).
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: TokenBroker.ClientSample <broker-url> <audience> [scope ...]");
    return 2;
}

var broker = new Uri(args[0]);
using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
var jobToken = Environment.GetEnvironmentVariable("TOKENBROKER_JOB_TOKEN")
    ?? await GitHubActionsJobToken.RequestAsync(http, broker.AbsoluteUri.TrimEnd('/'));

var client = new TokenBrokerClient(http, broker);
try
{
    var token = await client.ExchangeAsync(new TokenExchangeRequest
    {
        SubjectToken = jobToken,
        Audiences = [args[1]],
        Scopes = args.Length > 2 ? args[2..] : null,
    });

    // Use the token; never print it. Here: show what the broker granted, verified like the target service would.
    var verified = await new TokenBrokerVerifier(broker, http).VerifyAsync(token.AccessToken, args[1]);
    Console.WriteLine($"granted by rule '{verified.Rule}' to '{verified.Subject}' for {token.ExpiresIn.TotalMinutes:F0} minutes, scopes: {string.Join(' ', verified.Scopes)}");
    return 0;
}
catch (TokenBrokerException e)
{
    // The error id names the cause (see docs/faq.md); the request id finds the full reason in the audit log.
    Console.Error.WriteLine($"TokenBroker refused: {e.Error} [{e.ErrorId}] {e.Description} (request {e.RequestId})");
    return 1;
}
