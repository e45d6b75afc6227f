using System.Net;
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
    public void ReplayKey_SeparatesIssuerAndJtiUnambiguously()
    {
        Assert.That(
            TokenBroker.Exchange.ExchangeHandler.ReplayKey("https://a", "b|c"),
            Is.Not.EqualTo(TokenBroker.Exchange.ExchangeHandler.ReplayKey("https://a|b", "c")));
    }
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
