using System.Net;
using TokenBroker.State;
using TokenBroker.Tests.Infrastructure;

namespace TokenBroker.Tests.Exchange;

[TestFixture]
public sealed class ReplayTests
{
    [Test]
    public async Task SameJobTokenSentFortyTimesConcurrently_YieldsExactlyOneToken()
    {
        await using var broker = await BrokerHarness.StartAsync();
        var warm = await broker.ExchangeAsync(broker.GitHubToken(), "https://deploy.internal/payments");
        Assert.That(warm.Status, Is.EqualTo(HttpStatusCode.OK), warm.Raw);
        var token = broker.GitHubToken();

        using var start = new ManualResetEventSlim();
        var responses = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => Task.Run(async () =>
        {
            start.Wait();
            return await broker.ExchangeAsync(token, "https://deploy.internal/payments");
        })).ToList().Also(_ => start.Set()));

        Assert.That(responses.Count(r => r.Status == HttpStatusCode.OK), Is.EqualTo(1));
        Assert.That(responses.Where(r => r.Status != HttpStatusCode.OK).Select(r => r.ErrorId), Is.All.EqualTo("TB1118"));
    }

    [Test]
    public async Task InMemoryStore_UnderContention_AcceptsOneConsumerPerKey()
    {
        using var store = new InMemoryStateStore(TimeProvider.System);
        var expires = DateTimeOffset.UtcNow.AddMinutes(5);

        var results = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => Task.Run(async () =>
            await store.TryConsumeAsync("key-" + (i % 10), expires, Record("jti-" + i, expires), CancellationToken.None))));

        Assert.That(results.Count(r => r), Is.EqualTo(10));
    }

    [Test]
    public async Task InMemoryStore_AfterExpiry_AcceptsTheKeyAgain()
    {
        var clock = new ManualClock(DateTimeOffset.UtcNow);
        using var store = new InMemoryStateStore(clock);
        var expires = clock.GetUtcNow().AddMinutes(5);

        Assert.That(await store.TryConsumeAsync("k", expires, Record("a", expires), CancellationToken.None), Is.True);
        Assert.That(await store.TryConsumeAsync("k", expires, Record("b", expires), CancellationToken.None), Is.False);
        clock.Advance(TimeSpan.FromMinutes(6));
        Assert.That(await store.TryConsumeAsync("k", expires.AddMinutes(10), Record("c", expires.AddMinutes(10)), CancellationToken.None), Is.True);
        Assert.That(await store.GetIssuedAsync("a", CancellationToken.None), Is.Null, "expired records are not returned");
    }

    [Test]
    public async Task InMemoryStore_Release_FreesTheKeyOnlyForItsOwner()
    {
        using var store = new InMemoryStateStore(TimeProvider.System);
        var expires = DateTimeOffset.UtcNow.AddMinutes(5);
        await store.TryConsumeAsync("k", expires, Record("owner", expires), CancellationToken.None);

        await store.ReleaseAsync("k", "someone-else", CancellationToken.None);
        Assert.That(await store.TryConsumeAsync("k", expires, Record("x", expires), CancellationToken.None), Is.False);

        await store.ReleaseAsync("k", "owner", CancellationToken.None);
        Assert.That(await store.TryConsumeAsync("k", expires, Record("y", expires), CancellationToken.None), Is.True);
        Assert.That(await store.GetIssuedAsync("owner", CancellationToken.None), Is.Null);
        Assert.That(await store.GetIssuedAsync("y", CancellationToken.None), Is.Not.Null);
    }

    [Test]
    public void ReplayKey_SeparatesIssuerAndJtiUnambiguously()
    {
        Assert.That(
            TokenBroker.Exchange.ExchangeHandler.ReplayKey("https://a", "b|c"),
            Is.Not.EqualTo(TokenBroker.Exchange.ExchangeHandler.ReplayKey("https://a|b", "c")));
    }

    private static IssuedTokenRecord Record(string jti, DateTimeOffset expires) => new()
    {
        Jti = jti,
        ExpiresAt = expires,
        IssuedAt = expires.AddMinutes(-5),
        Subject = "s",
        Rule = "r",
        Provider = "github",
    };
}

internal static class TaskListExtensions
{
    public static List<T> Also<T>(this List<T> list, Action<List<T>> action)
    {
        action(list);
        return list;
    }
}

/// <summary>A clock tests move by hand.</summary>
internal sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;

    public override DateTimeOffset GetUtcNow() => _now;

    public void Advance(TimeSpan by) => _now += by;
}
