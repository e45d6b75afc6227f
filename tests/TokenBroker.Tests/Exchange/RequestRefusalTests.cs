using System.Net;
using System.Text;
using TokenBroker.Exchange;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Exchange;

/// <summary>Refusals of the HTTP request itself, before any token is looked at.</summary>
[TestFixture]
public sealed class RequestRefusalTests
{
    private BrokerHarness _broker = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _broker = await BrokerHarness.StartAsync();

    [OneTimeTearDown]
    public async Task StopAsync() => await _broker.DisposeAsync();

    private static void AssertRefused(ExchangeResponse response, HttpStatusCode status, string error, string errorId)
    {
        Assert.That(response.Status, Is.EqualTo(status), response.Raw);
        Assert.That(response.Error, Is.EqualTo(error), response.Raw);
        Assert.That(response.ErrorId, Is.EqualTo(errorId), response.Raw);
        Assert.That(response.AccessToken, Is.Null);
        Assert.That(response.Headers.CacheControl?.NoStore, Is.True);
        Assert.That(response.Body["request_id"]!.GetValue<string>(), Is.EqualTo(response.RequestId));
    }

    private static HttpRequestMessage Raw(HttpMethod method, string path, string? body, string contentType = "application/x-www-form-urlencoded") =>
        new(method, path) { Content = body is null ? null : new StringContent(body, Encoding.UTF8, contentType) };

    private string ValidBody(string? token = null) =>
        $"grant_type={Uri.EscapeDataString(TokenTypes.TokenExchangeGrant)}&subject_token={token ?? _broker.GitHubToken()}&subject_token_type={Uri.EscapeDataString(TokenTypes.IdToken)}&audience={Uri.EscapeDataString("https://deploy.internal/payments")}";

    [Test]
    public async Task Get_IsRefusedWith405()
    {
        var response = await _broker.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/token"));

        AssertRefused(response, HttpStatusCode.MethodNotAllowed, "invalid_request", "TB1001");
    }

    [Test]
    public async Task QueryStringParameters_AreRefused()
    {
        var response = await _broker.SendAsync(Raw(HttpMethod.Post, "/token?subject_token=x", ValidBody()));

        AssertRefused(response, HttpStatusCode.BadRequest, "invalid_request", "TB1003");
    }

    [Test]
    public async Task JsonBody_IsRefused()
    {
        var response = await _broker.SendAsync(Raw(HttpMethod.Post, "/token", "{\"grant_type\":\"x\"}", "application/json"));

        AssertRefused(response, HttpStatusCode.UnsupportedMediaType, "invalid_request", "TB1002");
    }

    [Test]
    public async Task NonUtf8Charset_IsRefused()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/token") { Content = new ByteArrayContent(Encoding.Latin1.GetBytes(ValidBody())) };
        request.Content.Headers.TryAddWithoutValidation("Content-Type", "application/x-www-form-urlencoded; charset=iso-8859-1");

        var response = await _broker.SendAsync(request);

        AssertRefused(response, HttpStatusCode.UnsupportedMediaType, "invalid_request", "TB1002");
    }

    [Test]
    public async Task OneMegabyteBody_IsRefusedWith413()
    {
        using var request = Raw(HttpMethod.Post, "/token", ValidBody() + "&pad=" + new string('a', 1 << 20));

        // The broker answers 413 from Content-Length without reading the body and closes the connection. Without
        // 'Expect: 100-continue' the client may still be writing the megabyte then and fail with a broken pipe
        // (a race in the test, not in the broker); with it, the client waits for the answer as a real client would.
        request.Headers.ExpectContinue = true;
        var response = await _broker.SendAsync(request);

        AssertRefused(response, HttpStatusCode.RequestEntityTooLarge, "invalid_request", "TB1004");
    }

    [Test]
    public async Task ChunkedBodyOverTheLimit_IsRefusedWith413()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/token")
        {
            Content = new StreamContent(new MemoryStream(Encoding.ASCII.GetBytes(ValidBody() + "&pad=" + new string('a', 100_000)))),
        };
        request.Content.Headers.ContentType = new("application/x-www-form-urlencoded");
        request.Headers.TransferEncodingChunked = true;

        var response = await _broker.SendAsync(request);

        AssertRefused(response, HttpStatusCode.RequestEntityTooLarge, "invalid_request", "TB1004");
    }

    [TestCase("subject_token")]
    [TestCase("grant_type")]
    [TestCase("subject_token_type")]
    [TestCase("scope")]
    [TestCase("requested_token_type")]
    public async Task RepeatedSingleValuedParameter_IsRefused(string name)
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "https://deploy.internal/payments");
        var value = form.FirstOrDefault(kv => kv.Key == name).Value ?? (name == "scope" ? "deploy:payments" : TokenTypes.AccessToken);
        form.Add(new(name, value));
        form.Add(new(name, value));

        var response = await _broker.PostFormAsync(form);

        AssertRefused(response, HttpStatusCode.BadRequest, "invalid_request", "TB1005");
    }

    [Test]
    public async Task MissingGrantType_IsRefused()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken()).Where(kv => kv.Key != "grant_type");

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_request", "TB1006");
    }

    [Test]
    public async Task ParameterNamesAreCaseSensitive()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken()).Select(kv => kv.Key == "grant_type" ? new KeyValuePair<string, string>("Grant_Type", kv.Value) : kv);

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_request", "TB1006");
    }

    [TestCase("subject_token")]
    [TestCase("subject_token_type")]
    public async Task MissingSubjectParameter_IsRefused(string name)
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken()).Where(kv => kv.Key != name);

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_request", "TB1006");
    }

    [TestCase("client_credentials")]
    [TestCase("authorization_code")]
    [TestCase("urn:ietf:params:oauth:grant-type:jwt-bearer")]
    public async Task OtherGrantType_IsUnsupported(string grant)
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken()).Select(kv => kv.Key == "grant_type" ? new KeyValuePair<string, string>("grant_type", grant) : kv);

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "unsupported_grant_type", "TB1007");
    }

    [Test]
    public async Task SamlSubjectTokenType_IsRefused()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken()).Select(kv => kv.Key == "subject_token_type" ? new KeyValuePair<string, string>(kv.Key, "urn:ietf:params:oauth:token-type:saml2") : kv);

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_request", "TB1008");
    }

    [Test]
    public async Task AccessTokenSubjectType_IsRefusedAsReExchange()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken()).Select(kv => kv.Key == "subject_token_type" ? new KeyValuePair<string, string>(kv.Key, TokenTypes.AccessToken) : kv);

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_request", "TB1016");
    }

    [Test]
    public async Task RequestingAnIdToken_IsRefused()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "https://deploy.internal/payments");
        form.Add(new("requested_token_type", TokenTypes.IdToken));

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_request", "TB1009");
    }

    [Test]
    public async Task ActorToken_IsRefused()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "https://deploy.internal/payments");
        form.Add(new("actor_token", _broker.GitHubToken()));
        form.Add(new("actor_token_type", TokenTypes.Jwt));

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_request", "TB1010");
    }

    [TestCase("0")]
    [TestCase("-5")]
    [TestCase("1e3")]
    [TestCase("ten")]
    public async Task InvalidRequestedLifetime_IsRefused(string value)
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "https://deploy.internal/payments");
        form.Add(new("requested_lifetime", value));

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_request", "TB1011");
    }

    [Test]
    public async Task TooManyFormFields_AreRefused()
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "https://deploy.internal/payments");
        form.AddRange(Enumerable.Range(0, 40).Select(i => new KeyValuePair<string, string>($"x{i}", "1")));

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_request", "TB1012");
    }

    [Test]
    public async Task MalformedPercentEncoding_IsRefused()
    {
        var response = await _broker.SendAsync(Raw(HttpMethod.Post, "/token", ValidBody() + "&x=%zz"));

        AssertRefused(response, HttpStatusCode.BadRequest, "invalid_request", "TB1013");
    }

    [TestCase("audience", "has space")]
    [TestCase("resource", "not-a-uri")]
    [TestCase("resource", "https://x.example/#frag")]
    public async Task MalformedTarget_IsInvalidTarget(string name, string value)
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken());
        form.Add(new(name, value));

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_target", "TB1014");
    }

    [TestCase("")]
    [TestCase("a  b")]
    [TestCase("quote\"")]
    public async Task MalformedScope_IsInvalidScope(string scope)
    {
        var form = BrokerHarness.ExchangeForm(_broker.GitHubToken(), "https://deploy.internal/payments");
        form.Add(new("scope", scope));

        AssertRefused(await _broker.PostFormAsync(form), HttpStatusCode.BadRequest, "invalid_scope", "TB1015");
    }
}
