using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using TokenBroker.Demo;

namespace TokenBroker.Tests.Infrastructure;

/// <summary>
/// A stand-in for AWS KMS on loopback: a real Kestrel server speaking the AWS JSON 1.1 protocol for
/// <c>TrentService.GetPublicKey</c> and <c>TrentService.Sign</c>, with a real P-256 key inside. Signatures are DER,
/// as KMS returns them for ECDSA_SHA_256.
/// </summary>
internal sealed class FakeKms : IAsyncDisposable
{
    public const string KeyArn = "arn:aws:kms:eu-west-1:111122223333:key/0f0e0d0c-aaaa-bbbb-cccc-000000000001";
    private readonly WebApplication _app;
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    private FakeKms(WebApplication app, string url)
    {
        _app = app;
        Url = url;
    }

    public string Url { get; }

    /// <summary>Every call as "target key-id signed?" (signed: the request carried an AWS SigV4 Authorization header).</summary>
    public ConcurrentQueue<string> Calls { get; } = new();

    /// <summary>When set, Sign answers with a valid DER signature made by another key.</summary>
    public bool WrongKey { get; set; }

    /// <summary>When set, every call answers 500 (a KMS outage).</summary>
    public bool Down { get; set; }

    public ECParameters PublicParameters => _key.ExportParameters(false);

    public static async Task<FakeKms> StartAsync()
    {
        var url = $"http://127.0.0.1:{FakeCiIssuer.FreePort()}";
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(url);
        var app = builder.Build();
        var fake = new FakeKms(app, url);
        app.MapPost("/", (Delegate)fake.HandleAsync);
        await app.StartAsync();
        return fake;
    }

    private async Task<IResult> HandleAsync(HttpContext http)
    {
        var target = http.Request.Headers["X-Amz-Target"].ToString();
        var body = JsonNode.Parse(await new StreamReader(http.Request.Body).ReadToEndAsync())!.AsObject();
        var keyId = body["KeyId"]?.GetValue<string>();
        var signed = http.Request.Headers.Authorization.ToString().StartsWith("AWS4-HMAC-SHA256 ", StringComparison.Ordinal);
        Calls.Enqueue($"{target} {keyId} {(signed ? "signed" : "unsigned")}");
        if (Down)
        {
            return Json(500, new JsonObject { ["__type"] = "KMSInternalException", ["message"] = "down" });
        }

        if (keyId is not ("alias/tokenbroker" or KeyArn))
        {
            return Json(400, new JsonObject { ["__type"] = "NotFoundException", ["message"] = $"Alias {keyId} is not found." });
        }

        switch (target)
        {
            case "TrentService.GetPublicKey":
                return Json(200, new JsonObject
                {
                    ["KeyId"] = KeyArn,
                    ["PublicKey"] = Convert.ToBase64String(_key.ExportSubjectPublicKeyInfo()),
                    ["KeySpec"] = "ECC_NIST_P256",
                    ["KeyUsage"] = "SIGN_VERIFY",
                    ["SigningAlgorithms"] = new JsonArray("ECDSA_SHA_256"),
                });
            case "TrentService.Sign":
                if (body["MessageType"]?.GetValue<string>() != "DIGEST" || body["SigningAlgorithm"]?.GetValue<string>() != "ECDSA_SHA_256")
                {
                    return Json(400, new JsonObject { ["__type"] = "ValidationException", ["message"] = "unexpected request" });
                }

                var digest = Convert.FromBase64String(body["Message"]!.GetValue<string>());
                using (var other = ECDsa.Create(ECCurve.NamedCurves.nistP256))
                {
                    var signature = (WrongKey ? other : _key).SignHash(digest, DSASignatureFormat.Rfc3279DerSequence);
                    return Json(200, new JsonObject
                    {
                        ["KeyId"] = KeyArn,
                        ["Signature"] = Convert.ToBase64String(signature),
                        ["SigningAlgorithm"] = "ECDSA_SHA_256",
                    });
                }

            default:
                return Json(400, new JsonObject { ["__type"] = "UnknownOperationException" });
        }
    }

    private static IResult Json(int status, JsonObject body) =>
        Results.Text(body.ToJsonString(), "application/x-amz-json-1.1", System.Text.Encoding.UTF8, status);

    public async ValueTask DisposeAsync()
    {
        await _app.DisposeAsync();
        _key.Dispose();
    }
}
