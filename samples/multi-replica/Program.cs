using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using TokenBroker.Demo;
using TokenBroker.Security;

// Starts redis-server, a fake GitHub issuer and three broker processes sharing that Redis, one key ring and one
// admin credential, then shows — and checks — that the replicas behave as one broker. Exit code 0 when every
// check holds; the last line is "multi-replica demo: N passed, N failed".
var dll = args.Length > 0 ? args[0] : "src/TokenBroker/bin/Release/net10.0/tokenbroker.dll";
var work = Directory.CreateTempSubdirectory("tb-replicas-").FullName;
var processes = new List<Process>();
int passed = 0, failed = 0;
void Check(bool ok, string what)
{
    Console.WriteLine($"  {(ok ? "ok  " : "FAIL")} {what}");
    if (ok) { passed++; } else { failed++; }
}

try
{
    // Redis, on a free loopback port, without persistence.
    var redisPort = FakeCiIssuer.FreePort();
    processes.Add(Start("redis-server", ["--port", redisPort.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work]));
    await using var issuer = await FakeCiIssuer.StartAsync("github", "gitlab");

    // One key ring for all replicas: key A signs now; key B activates in 90 s and is already announced
    // (AnnouncementLeadTime 2 min), so every replica must publish both and sign with A.
    var keyA = WriteKey("es256-a.pem");
    var keyB = WriteKey("es256-b.pem");
    var activateB = DateTimeOffset.UtcNow.AddSeconds(90).ToString("O", CultureInfo.InvariantCulture);
    var (adminSecret, adminLine) = CredentialHash.Create("demo-admin");
    var issuerUrl = $"http://127.0.0.1:{FakeCiIssuer.FreePort()}";   // the replicas' common issuer (a load balancer in production)
    var replicas = new List<string>();
    for (var i = 0; i < 3; i++)
    {
        var url = $"http://127.0.0.1:{FakeCiIssuer.FreePort()}";
        replicas.Add(url);
        processes.Add(Start("dotnet",
        [
            dll, "serve", "--urls", url,
            $"--TokenBroker:Issuer={issuerUrl}",
            "--TokenBroker:Providers:github:Kind=github", $"--TokenBroker:Providers:github:Issuer={issuer.IssuerUrl("github")}",
            "--TokenBroker:Providers:github:AllowHttp=true", "--TokenBroker:Providers:github:SharedIssuer=true",
            "--TokenBroker:Providers:gitlab:Kind=gitlab", $"--TokenBroker:Providers:gitlab:Issuer={issuer.IssuerUrl("gitlab")}",
            "--TokenBroker:Providers:gitlab:AllowHttp=true", "--TokenBroker:Providers:gitlab:SharedIssuer=true",
            "--TokenBroker:State:Store=redis", $"--TokenBroker:State:Redis:Endpoints:0=127.0.0.1:{redisPort}",
            "--TokenBroker:Signing:AnnouncementLeadTime=00:02:00",
            $"--TokenBroker:Signing:Keys:0:Path={keyA}",
            $"--TokenBroker:Signing:Keys:1:Path={keyB}", $"--TokenBroker:Signing:Keys:1:ActivateAt={activateB}",
            $"--TokenBroker:Admin:Credentials:0={adminLine}",
        ]));
    }

    using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(15) };
    foreach (var replica in replicas)
    {
        await WaitReadyAsync(http, replica);
    }

    Console.WriteLine($"3 replicas ({string.Join(", ", replicas)}) on one redis-server (127.0.0.1:{redisPort})");

    Console.WriteLine("1) a job token exchanged on replica 1 is refused as a replay on replicas 2 and 3");
    var jobToken = issuer.Mint("github", Fixtures.Load("github", "push_main_production"), issuerUrl);
    var first = await ExchangeAsync(http, replicas[0], jobToken);
    var second = await ExchangeAsync(http, replicas[1], jobToken);
    var third = await ExchangeAsync(http, replicas[2], jobToken);
    Check(first.Status == HttpStatusCode.OK, $"replica 1 issues a token ({(int)first.Status})");
    Check(second.ErrorId == "TB1118" && third.ErrorId == "TB1118", $"replicas 2 and 3 refuse the replay ({second.ErrorId}, {third.ErrorId})");

    Console.WriteLine("2) a block created on replica 2 is enforced by every replica within a second");
    using (var request = new HttpRequestMessage(HttpMethod.Post, replicas[1] + "/admin/blocks")
    {
        Content = new StringContent("""{"repository_id":"900101","reason":"multi-replica demo"}""", Encoding.UTF8, "application/json"),
    })
    {
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", adminSecret);
        using var created = await http.SendAsync(request);
        Check(created.StatusCode == HttpStatusCode.Created, $"replica 2 creates the block ({(int)created.StatusCode})");
    }

    var clock = Stopwatch.StartNew();
    var blocked = new bool[3];
    while (clock.Elapsed < TimeSpan.FromSeconds(1) && blocked.Any(b => !b))
    {
        for (var i = 0; i < 3; i++)
        {
            if (!blocked[i])
            {
                var r = await ExchangeAsync(http, replicas[i], issuer.Mint("github", Fixtures.Load("github", "push_main_production"), issuerUrl));
                blocked[i] = r.ErrorId == "TB1206";
            }
        }
    }

    Check(blocked.All(b => b), $"replicas 1, 2 and 3 refuse with TB1206 after {clock.ElapsedMilliseconds} ms");

    Console.WriteLine("3) key rotation: every replica publishes the same JWKS (active key A, announced key B) and signs with A");
    var jwks = new List<string>();
    foreach (var replica in replicas)
    {
        jwks.Add(await http.GetStringAsync(replica + "/.well-known/jwks.json"));
    }

    var kids = JsonNode.Parse(jwks[0])!["keys"]!.AsArray().Select(k => k!["kid"]!.GetValue<string>()).ToList();
    Check(jwks.Distinct().Count() == 1 && kids.Count == 2, $"identical JWKS on all replicas with {kids.Count} keys");
    var gitlab = new List<string>();
    for (var i = 0; i < 3; i++)
    {
        var r = await ExchangeAsync(http, replicas[i], issuer.Mint("gitlab", Fixtures.Load("gitlab", "protected_main_staging"), issuerUrl), "https://iac.internal/state");
        gitlab.Add(r.Kid ?? $"none ({(int)r.Status} {r.ErrorId})");
    }

    Check(gitlab.Distinct().Count() == 1 && kids.Contains(gitlab[0]), $"all replicas sign with the same active kid {gitlab[0]}");
}
catch (Exception e)
{
    Console.WriteLine($"  FAIL {e.GetType().Name}: {e.Message}");
    failed++;
}
finally
{
    foreach (var p in processes)
    {
        try { p.Kill(entireProcessTree: true); p.WaitForExit(5000); } catch (InvalidOperationException) { }
        p.Dispose();
    }

    Directory.Delete(work, true);
}

Console.WriteLine($"multi-replica demo: {passed} passed, {failed} failed");
return failed == 0 && passed > 0 ? 0 : 1;

string WriteKey(string name)
{
    var path = Path.Combine(work, name);
    using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    File.WriteAllText(path, key.ExportPkcs8PrivateKeyPem());
    return path;
}

static Process Start(string file, string[] arguments) =>
    Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })
    ?? throw new InvalidOperationException($"{file} did not start");

static async Task WaitReadyAsync(HttpClient http, string url)
{
    var clock = Stopwatch.StartNew();
    while (clock.Elapsed < TimeSpan.FromSeconds(60))
    {
        try
        {
            if ((await http.GetAsync(url + "/readyz")).IsSuccessStatusCode)
            {
                return;
            }
        }
        catch (HttpRequestException)
        {
        }

        await Task.Delay(200);
    }

    throw new TimeoutException($"{url} did not become ready");
}

static async Task<(HttpStatusCode Status, string? ErrorId, string? Kid)> ExchangeAsync(HttpClient http, string replica, string jobToken, string audience = "https://deploy.internal/payments")
{
    using var content = new FormUrlEncodedContent(
    [
        new("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        new("subject_token", jobToken),
        new("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
        new("audience", audience),
    ]);
    using var response = await http.PostAsync(replica + "/token", content);
    var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
    var token = body["access_token"]?.GetValue<string>();
    var kid = token is null ? null : JsonNode.Parse(System.Buffers.Text.Base64Url.DecodeFromChars(token.Split('.')[0]))!["kid"]!.GetValue<string>();
    return (response.StatusCode, body["error_id"]?.GetValue<string>(), kid);
}
