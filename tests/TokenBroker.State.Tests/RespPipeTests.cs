using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using TokenBroker.State.Redis;
using TokenBroker.Testing;

namespace TokenBroker.State.Tests;

[TestFixture]
internal sealed class RespParserTests
{
    private static (int Used, RespReply Reply) Parse(string wire)
    {
        var used = RespParser.TryParse(Encoding.UTF8.GetBytes(wire), out var reply);
        return (used, reply);
    }

    [TestCase("+OK\r\n", RespKind.Simple, 0, "OK")]
    [TestCase("+QUEUED\r\n", RespKind.Simple, 0, "QUEUED")]
    [TestCase("-READONLY You can't write against a read only replica.\r\n", RespKind.Error, 0, "READONLY You can't write against a read only replica.")]
    [TestCase(":1\r\n", RespKind.Integer, 1, null)]
    [TestCase(":-42\r\n", RespKind.Integer, -42, null)]
    [TestCase("$-1\r\n", RespKind.Nil, 0, null)]
    [TestCase("*-1\r\n", RespKind.Nil, 0, null)]
    [TestCase("$0\r\n\r\n", RespKind.Bulk, 0, "")]
    [TestCase("$5\r\nhe\r\no\r\n", RespKind.Bulk, 0, "he\r\no")]
    [TestCase("*2\r\n:1\r\n$1\r\nx\r\n", RespKind.Array, 2, null)]
    [TestCase("*0\r\n", RespKind.Array, 0, null)]
    public void AWholeReply_IsReadWithItsLength(string wire, RespKind kind, long integer, string? text)
    {
        var (used, reply) = Parse(wire + "+NEXT\r\n");

        Assert.That(used, Is.EqualTo(Encoding.UTF8.GetByteCount(wire)));
        Assert.That(reply, Is.EqualTo(new RespReply(kind, integer, text)));
    }

    [TestCase("")]
    [TestCase("+O")]
    [TestCase("+OK\r")]
    [TestCase(":12")]
    [TestCase("$5\r\nhel")]
    [TestCase("$5\r\nhello\r")]
    [TestCase("*2\r\n:1\r\n")]
    [TestCase("*2\r\n:1\r\n$3\r\nab")]
    public void APartialReply_WaitsForMore(string wire) => Assert.That(Parse(wire).Used, Is.Zero);

    [TestCase("?OK\r\n", TestName = "unknown type")]
    [TestCase("\r\n", TestName = "empty line")]
    [TestCase(":1x\r\n", TestName = "integer with junk")]
    [TestCase(":\r\n", TestName = "integer without digits")]
    [TestCase(":99999999999999999999999\r\n", TestName = "integer too long")]
    [TestCase("$-2\r\n", TestName = "negative bulk length")]
    [TestCase("$70000\r\n", TestName = "bulk over the limit")]
    [TestCase("$3\r\nabcd\r\n", TestName = "bulk longer than announced")]
    [TestCase("*-2\r\n", TestName = "negative array length")]
    [TestCase("*2000\r\n", TestName = "array over the limit")]
    [TestCase("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", TestName = "arrays nested too deep")]
    [TestCase("+O\nK\r\n", TestName = "stray line feed")]
    [TestCase("$2\r\n\xff\xfe\r\n", TestName = "bulk that is not UTF-8")]
    public void AMalformedReply_Throws(string wire)
    {
        var bytes = wire.Select(c => (byte)c).ToArray(); // byte per char, so that \xff stays one invalid byte
        Assert.That(() => RespParser.TryParse(bytes, out _), Throws.TypeOf<InvalidDataException>());
    }

    [Test]
    public void ALineWithoutEnd_IsRefusedOnceLongerThanTheLimit()
    {
        Assert.That(RespParser.TryParse(Encoding.ASCII.GetBytes("+" + new string('a', 4000)), out _), Is.Zero);
        Assert.That(() => RespParser.TryParse(Encoding.ASCII.GetBytes("+" + new string('a', 5000)), out _), Throws.TypeOf<InvalidDataException>());
    }
}

/// <summary>The direct connection against a real redis-server, and against a fake one that misbehaves.</summary>
[TestFixture]
public sealed class RespPipeTests
{
    private RedisServer _redis = null!;

    [OneTimeSetUp]
    public async Task StartRedis() => _redis = await RedisServer.StartAsync();

    [OneTimeTearDown]
    public async Task StopRedis() => await _redis.DisposeAsync();

    private static Task<RespPipe> ConnectAsync(EndPoint endPoint, TimeSpan? staleAfter = null) =>
        RespPipe.ConnectAsync(endPoint, null, null, "tokenbroker:test", TimeSpan.FromSeconds(5), staleAfter ?? TimeSpan.FromSeconds(5));

    [Test]
    public async Task UnderConcurrency_EveryCallerGetsTheRepliesToItsOwnCommands()
    {
        using var pipe = await ConnectAsync(RedisStateStore.ParseEndPoint(_redis.EndPoint));
        var prefix = Guid.NewGuid().ToString("N");

        var results = await Task.WhenAll(Enumerable.Range(0, 2000).Select(i => Task.Run(async () =>
        {
            var value = new string((char)('a' + (i % 26)), i % 300) + i;
            var replies = await pipe.SendAsync([["SET", $"{prefix}:{i}", value], ["GET", $"{prefix}:{i}"], ["INCRBY", $"{prefix}:n:{i}", i.ToString(System.Globalization.CultureInfo.InvariantCulture)]]);
            return replies[0].IsOk && replies[1] == new RespReply(RespKind.Bulk, 0, value) && replies[2] == new RespReply(RespKind.Integer, i, null);
        })));

        Assert.That(results, Is.All.True);
        Assert.That(pipe.Broken, Is.Null);
    }

    [Test]
    public async Task ErrorRepliesAreReplies_AndLeaveTheConnectionWorking()
    {
        using var pipe = await ConnectAsync(RedisStateStore.ParseEndPoint(_redis.EndPoint));

        var replies = await pipe.SendAsync([["NOSUCHCOMMAND"], ["PING"]]);

        Assert.That(replies[0].Kind, Is.EqualTo(RespKind.Error));
        Assert.That(replies[1], Is.EqualTo(new RespReply(RespKind.Simple, 0, "PONG")));
        Assert.That(pipe.Broken, Is.Null);
    }

    [Test]
    public async Task AWrongPassword_FailsTheConnection()
    {
        await using var locked = await RedisServer.StartAsync("--requirepass", "right-password");
        Assert.That(
            async () => await RespPipe.ConnectAsync(RedisStateStore.ParseEndPoint(locked.EndPoint), "wrong-password", null, "tokenbroker:test", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5)),
            Throws.TypeOf<RedisReplyException>().With.Message.Contains("WRONGPASS").Or.Message.Contains("invalid"));

        using var pipe = await RespPipe.ConnectAsync(RedisStateStore.ParseEndPoint(locked.EndPoint), "right-password", null, "tokenbroker:test", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5));
        Assert.That((await pipe.SendAsync([["PING"]]))[0].Text, Is.EqualTo("PONG"));
    }

    // A fake server: answers the connection set-up, waits for the test's two SETs, writes the script, then closes.
    private static async Task FakeServerAsync(TcpListener listener, string script)
    {
        using var client = await listener.AcceptTcpClientAsync();
        var stream = client.GetStream();
        var seen = new StringBuilder();
        var buffer = new byte[4096];
        async Task ReadUntilAsync(string marker)
        {
            while (!seen.ToString().Contains(marker, StringComparison.Ordinal))
            {
                var read = await stream.ReadAsync(buffer);
                if (read == 0)
                {
                    return;
                }

                seen.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }
        }

        await ReadUntilAsync("tokenbroker:test\r\n");
        await stream.WriteAsync("+OK\r\n"u8.ToArray());
        await ReadUntilAsync("$1\r\nb\r\n$1\r\n2\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(script));
        await Task.Delay(300);
    }

    [TestCase("+OK\r\n?garbage\r\n", TestName = "a malformed reply")]
    [TestCase("+OK\r\n", TestName = "the server closing the connection before the last reply")]
    public async Task WhenTheServerMisbehaves_EveryWaitingCommandFails_AndThePipeIsBroken(string script)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var server = FakeServerAsync(listener, script);
        using var pipe = await ConnectAsync(listener.LocalEndpoint);

        var waiting = pipe.SendAsync([["SET", "a", "1"], ["SET", "b", "2"]]);

        Assert.That(async () => await waiting, Throws.InstanceOf<IOException>());
        await server;
        Assert.That(pipe.Broken, Is.Not.Null);
        Assert.That(async () => await pipe.SendAsync([["PING"]]), Throws.InstanceOf<IOException>(), "a broken pipe refuses at once");
    }

    [Test]
    public async Task AReplyNobodyAskedFor_BreaksThePipe()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var server = FakeServerAsync(listener, "+OK\r\n+OK\r\n:7\r\n");
        using var pipe = await ConnectAsync(listener.LocalEndpoint);

        var replies = await pipe.SendAsync([["SET", "a", "1"], ["SET", "b", "2"]]);

        Assert.That(replies, Is.EqualTo(new[] { RespReply.Ok, RespReply.Ok }));
        await server;
        Assert.That(pipe.Broken, Is.InstanceOf<InvalidDataException>().With.Message.Contains("no command waits"));
    }

    [Test]
    public async Task ACommandUnansweredWithinTheAnswerTimeout_Fails_AndTheRepliesAfterItStillReachTheirCallers()
    {
        using var pipe = await RespPipe.ConnectAsync(RedisStateStore.ParseEndPoint(_redis.EndPoint), null, null, "tokenbroker:test", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(200));
        var key = Guid.NewGuid().ToString("N");
        await _redis.CliAsync("client", "pause", "1000", "WRITE");
        var watch = Stopwatch.StartNew();
        var stuck = pipe.SendAsync([["SET", key, "first"]]);
        Assert.That(async () => await stuck, Throws.InstanceOf<TimeoutException>().With.Message.Contains("200 ms"));
        Assert.That(watch.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(190)).And.LessThan(TimeSpan.FromMilliseconds(900)), "failed by the answer timeout, not by the end of the pause");

        // The paused SET still runs when the pause ends; the commands sent after it get their own replies.
        var after = pipe.SendAsync([["GET", key], ["ECHO", "second"]]);
        await _redis.CliAsync("client", "unpause");
        var replies = await after;
        Assert.That(replies.Select(r => r.Text), Is.EqualTo(new[] { "first", "second" }));
        Assert.That(pipe.Broken, Is.Null);
    }

    [Test]
    public async Task WithoutAnAnswerTimeout_ASlowReplyIsAwaited()
    {
        using var pipe = await ConnectAsync(RedisStateStore.ParseEndPoint(_redis.EndPoint));
        await _redis.CliAsync("client", "pause", "400", "WRITE");
        var replies = await pipe.SendAsync([["SET", Guid.NewGuid().ToString("N"), "1"]]);
        Assert.That(replies.Single().IsOk, Is.True);
    }

    [Test]
    public async Task ACommandLeftUnanswered_PastTheLimit_BreaksThePipe_AndTheNextSendFails()
    {
        await _redis.CliAsync("client", "pause", "1500", "WRITE");
        try
        {
            using var pipe = await ConnectAsync(RedisStateStore.ParseEndPoint(_redis.EndPoint), staleAfter: TimeSpan.FromMilliseconds(300));
            var stuck = pipe.SendAsync([["SET", Guid.NewGuid().ToString("N"), "1"]]);
            await Task.Delay(500);

            Assert.That(async () => await pipe.SendAsync([["PING"]]), Throws.InstanceOf<IOException>().With.Message.Contains("unanswered"));
            Assert.That(async () => await stuck, Throws.InstanceOf<IOException>());
        }
        finally
        {
            await _redis.CliAsync("client", "unpause");
        }
    }
}

/// <summary>Which connection the exchange's write takes: the direct one to a single node, SE.Redis on a Cluster.</summary>
[TestFixture]
public sealed class RedisDirectWriteTests
{
    [Test]
    public async Task OnASingleServer_TheExchangeWritesOverTheDirectConnection()
    {
        await using var redis = await RedisServer.StartAsync();
        using var store = await RedisStores.ConnectAsync([redis.EndPoint]);
        var key = StateStoreContract.ReplayKey("direct");
        Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Is.True);

        var clients = await redis.CliAsync("client", "list");
        Assert.That(clients, Does.Contain("name=tokenbroker:exchange"));
        Assert.That(clients.Split('\n').Single(l => l.Contains("name=tokenbroker:exchange", StringComparison.Ordinal)), Does.Contain("cmd=set"));
    }

    [Test]
    public async Task OnACluster_TheExchangeWritesThroughSeRedis()
    {
        await using var cluster = await RedisCluster.StartAsync();
        using var store = await RedisStores.ConnectAsync([cluster.Nodes[0].EndPoint]);
        for (var i = 0; i < 20; i++)
        {
            var key = StateStoreContract.ReplayKey("cluster" + i);
            Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), StateStoreContract.Record(key), CancellationToken.None), Is.True);
        }

        foreach (var node in cluster.Nodes)
        {
            Assert.That(await node.CliAsync("client", "list"), Does.Not.Contain("tokenbroker:exchange"));
        }
    }
}
