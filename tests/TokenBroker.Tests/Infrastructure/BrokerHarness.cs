using System.Net;
using System.Text.Json.Nodes;
using TokenBroker.Audit;
using TokenBroker.Demo;
using TokenBroker.Exchange;
using TokenBroker.Hosting;

namespace TokenBroker.Tests.Infrastructure;

/// <summary>
/// A real broker on loopback (Kestrel) trusting a real fake CI issuer (Kestrel) for "github" and "gitlab",
/// with the sample rules and an in-memory audit sink. One per test fixture.
/// </summary>
internal sealed class BrokerHarness : IAsyncDisposable
{
    private readonly bool _ownsIssuer;

    private BrokerHarness(FakeCiIssuer issuer, WebApplication app, string url, DemoCommand.MemoryAuditSink audit, bool ownsIssuer, string brokerIssuer)
    {
        _ownsIssuer = ownsIssuer;
        BrokerIssuer = brokerIssuer;
        Issuer = issuer;
        App = app;
        Url = url;
        Audit = audit;
        Client = new HttpClient { BaseAddress = new Uri(url) };
    }

    public FakeCiIssuer Issuer { get; }
    public WebApplication App { get; }
    public string Url { get; }
    public DemoCommand.MemoryAuditSink Audit { get; }
    public HttpClient Client { get; }

    /// <summary>The broker's issuer URL (its own URL unless TokenBroker:Issuer is set, e.g. shared by replicas).</summary>
    public string BrokerIssuer { get; }

    /// <summary>The audience job tokens must carry (the broker's issuer URL by default).</summary>
    public string Audience => BrokerIssuer;

    public static Task<BrokerHarness> StartAsync(IReadOnlyDictionary<string, string?>? extra = null, FakeCiIssuer? sharedIssuer = null, TimeProvider? time = null) =>
        StartAsync(new HarnessOptions { Extra = extra, SharedIssuer = sharedIssuer, Time = time });

    public static async Task<BrokerHarness> StartAsync(HarnessOptions options)
    {
        var (extra, sharedIssuer, time) = (options.Extra, options.SharedIssuer, options.Time);
        var issuer = sharedIssuer ?? await FakeCiIssuer.StartAsync("github", "gitlab");
        var url = $"http://127.0.0.1:{FakeCiIssuer.FreePort()}";
        var settings = DemoCommand.DemoSettings(issuer, url);
        foreach (var (k, v) in extra ?? new Dictionary<string, string?>())
        {
            settings[k] = v;
        }

        var audit = new DemoCommand.MemoryAuditSink();
        var built = BrokerApp.Build(new BrokerAppOptions
        {
            Overrides = settings,
            AuditSink = options.RealAuditSink ? null : audit,
            MinimumLogLevel = options.MinimumLogLevel,
            Time = time,
            ConfigureLogging = options.ConfigureLogging,
            WrapStateStore = options.WrapStateStore,
        });
        if (built.App is null)
        {
            throw new InvalidOperationException("broker did not build: " + string.Join("; ", built.Errors));
        }

        await built.App.StartAsync();
        return new BrokerHarness(issuer, built.App, url, audit, ownsIssuer: sharedIssuer is null, settings["TokenBroker:Issuer"] ?? url);
    }

    /// <summary>A GitHub-shaped job token from a fixture, for this broker.</summary>
    public string GitHubToken(string fixture = "push_main_production", Action<JsonObject>? tweak = null, TimeSpan? lifetime = null, DateTimeOffset? now = null) =>
        Issuer.Mint("github", Fixtures.Load("github", fixture), Audience, tweak, lifetime, now);

    public string GitLabToken(string fixture = "protected_main_staging", Action<JsonObject>? tweak = null) =>
        Issuer.Mint("gitlab", Fixtures.Load("gitlab", fixture), Audience, tweak);

    /// <summary>POSTs a token-exchange form and returns status, parsed body and headers.</summary>
    public async Task<ExchangeResponse> ExchangeAsync(string subjectToken, params string[] audiences) =>
        await PostFormAsync(ExchangeForm(subjectToken, audiences));

    public static List<KeyValuePair<string, string>> ExchangeForm(string subjectToken, params string[] audiences)
    {
        var form = new List<KeyValuePair<string, string>>
        {
            new("grant_type", TokenTypes.TokenExchangeGrant),
            new("subject_token", subjectToken),
            new("subject_token_type", TokenTypes.IdToken),
        };
        form.AddRange(audiences.Select(a => new KeyValuePair<string, string>("audience", a)));
        return form;
    }

    /// <param name="form">The form fields.</param>
    /// <param name="expectContinue">
    /// Send <c>Expect: 100-continue</c>. For bodies over the size limit: the broker answers 413 from Content-Length
    /// without reading the body and closes the connection, so a client still writing the body may see a reset
    /// instead of the answer (a race in the test, not in the broker); with it the client waits for the answer first.
    /// </param>
    public async Task<ExchangeResponse> PostFormAsync(IEnumerable<KeyValuePair<string, string>> form, bool expectContinue = false)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri("/token", UriKind.Relative)) { Content = new FormUrlEncodedContent(form) };
        request.Headers.ExpectContinue = expectContinue;
        using var response = await Client.SendAsync(request);
        return await ExchangeResponse.ReadAsync(response);
    }

    public async Task<ExchangeResponse> SendAsync(HttpRequestMessage request)
    {
        using var response = await Client.SendAsync(request);
        return await ExchangeResponse.ReadAsync(response);
    }

    public AuditEvent? AuditFor(ExchangeResponse response) =>
        Audit.Events.LastOrDefault(e => e.RequestId == response.RequestId);

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
        if (_ownsIssuer)
        {
            await Issuer.DisposeAsync();
        }
    }
}

/// <summary>How to start a <see cref="BrokerHarness"/>.</summary>
internal sealed record HarnessOptions
{
    public IReadOnlyDictionary<string, string?>? Extra { get; init; }
    public FakeCiIssuer? SharedIssuer { get; init; }
    public TimeProvider? Time { get; init; }

    /// <summary>Use the configured audit sink (Audit:Sink) instead of the in-memory one; <see cref="BrokerHarness.Audit"/> stays empty.</summary>
    public bool RealAuditSink { get; init; }
    public LogLevel MinimumLogLevel { get; init; } = LogLevel.Warning;
    public Action<ILoggingBuilder>? ConfigureLogging { get; init; }
    public Func<TokenBroker.State.IStateStore, TokenBroker.State.IStateStore>? WrapStateStore { get; init; }
}

/// <summary>A token endpoint answer.</summary>
internal sealed record ExchangeResponse(HttpStatusCode Status, JsonObject Body, System.Net.Http.Headers.HttpResponseHeaders Headers, string Raw)
{
    public string? Error => Body["error"]?.GetValue<string>();
    public string? ErrorId => Body["error_id"]?.GetValue<string>();
    public string? AccessToken => Body["access_token"]?.GetValue<string>();
    public string? RequestId => Headers.TryGetValues("X-Request-Id", out var v) ? v.FirstOrDefault() : null;

    public static async Task<ExchangeResponse> ReadAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        JsonObject body;
        try
        {
            body = JsonNode.Parse(text) as JsonObject ?? [];
        }
        catch (System.Text.Json.JsonException)
        {
            body = [];
        }

        return new ExchangeResponse(response.StatusCode, body, response.Headers, text);
    }

    /// <summary>The decoded payload of the issued token.</summary>
    public JsonObject Claims() => JwtParts.Payload(AccessToken!);
}

internal static class JwtParts
{
    public static JsonObject Header(string jwt) => Decode(jwt.Split('.')[0]);

    public static JsonObject Payload(string jwt) => Decode(jwt.Split('.')[1]);

    public static string B64(byte[] bytes) => System.Buffers.Text.Base64Url.EncodeToString(bytes);

    public static string B64(string text) => B64(System.Text.Encoding.UTF8.GetBytes(text));

    private static JsonObject Decode(string segment) =>
        JsonNode.Parse(System.Buffers.Text.Base64Url.DecodeFromChars(segment))!.AsObject();
}
