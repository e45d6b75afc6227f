namespace TokenBroker.State.Tests;

/// <summary>
/// What the in-memory store holds per exchange. It keeps every replay mark and issued-token record for the token's
/// lifetime in the broker's heap, so its size per exchange is the broker's memory per exchange held (peak RSS under
/// sustained load, and the work of every full collection).
/// </summary>
[TestFixture]
[NonParallelizable] // the heap is measured: no other test may allocate meanwhile
public sealed class InMemoryStateStoreTests
{
    private const int Exchanges = 50_000;

    /// <summary>
    /// Job tokens of a few repositories: the claims of every token are new strings (as parsed from its payload), but
    /// the subject and the ids repeat across the jobs of a repository.
    /// </summary>
    [Test]
    public async Task HeldExchanges_OfAFewRepositories_CostAtMost400BytesEach()
    {
        var perExchange = await BytesPerExchangeAsync(i => i % 20);

        TestContext.Out.WriteLine($"{perExchange:F0} bytes per exchange held");
        Assert.That(perExchange, Is.LessThanOrEqualTo(400));
    }

    /// <summary>Every token of its own repository and run: nothing repeats, so nothing can be shared.</summary>
    [Test]
    public async Task HeldExchanges_OfDistinctRepositories_CostAtMost700BytesEach()
    {
        var perExchange = await BytesPerExchangeAsync(i => i);

        TestContext.Out.WriteLine($"{perExchange:F0} bytes per exchange held");
        Assert.That(perExchange, Is.LessThanOrEqualTo(700));
    }

    [Test]
    public async Task SharedStrings_AreEqualToTheRecordedOnes()
    {
        using var store = new InMemoryStateStore(TimeProvider.System);
        var records = new List<IssuedTokenRecord>();
        for (var i = 0; i < 100; i++)
        {
            var key = StateStoreContract.ReplayKey("held");
            var record = RecordFor(key, i % 3, DateTimeOffset.UtcNow);
            records.Add(record);
            Assert.That(await store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMinutes(5), record, CancellationToken.None), Is.True);
        }

        foreach (var record in records)
        {
            Assert.That(await store.GetIssuedAsync(record.Jti, CancellationToken.None), Is.EqualTo(record));
        }
    }

    [Test]
    public async Task ReplayKeysThatAreNotHexDigests_AreKeptApart()
    {
        using var store = new InMemoryStateStore(TimeProvider.System);
        var now = DateTimeOffset.UtcNow;

        // Keys of other shapes than 64 lower-case hex characters: upper case, shorter, longer, any text, and two that
        // differ only in an unpaired surrogate (which a UTF-8 encoding would turn into the same U+FFFD).
        string[] keys =
        [
            "abcd" + new string('0', 60), "ABCD" + new string('0', 60), "abcd-some-other-key", "abcd" + new string('0', 61),
            "abcd" + new string('0', 59), "abcd\uD800-key", "abcd\uDBFF-key",
        ];
        foreach (var key in keys)
        {
            Assert.That(await store.TryConsumeAsync(key, now.AddMinutes(5), RecordFor(key, 0, now), CancellationToken.None), Is.True, key);
        }

        foreach (var key in keys)
        {
            Assert.That(await store.TryConsumeAsync(key, now.AddMinutes(5), RecordFor(key, 0, now), CancellationToken.None), Is.False, key);
        }
    }

    /// <summary>
    /// The heap the store keeps per exchange: measured after a full collection, once the exchanges' own objects (the
    /// replay key, the record and its strings) are dropped, so only what the store holds stays reachable.
    /// </summary>
    private static async Task<double> BytesPerExchangeAsync(Func<int, int> repositoryOf)
    {
        var now = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        using var store = new InMemoryStateStore(TimeProvider.System);
        var before = GC.GetTotalMemory(forceFullCollection: true);
        for (var i = 0; i < Exchanges; i++)
        {
            var key = StateStoreContract.ReplayKey("held");
            Assert.That(await store.TryConsumeAsync(key, now.AddMinutes(10), RecordFor(key, repositoryOf(i), now), CancellationToken.None), Is.True);
        }

        var after = GC.GetTotalMemory(forceFullCollection: true);
        GC.KeepAlive(store);
        return (after - before) / (double)Exchanges;
    }

    /// <summary>A record as the broker builds it: every claim a new string, the rule and provider names shared.</summary>
    private static IssuedTokenRecord RecordFor(string replayKey, int repository, DateTimeOffset now) => new()
    {
        Jti = StateStoreContract.Jti(replayKey),
        IssuedAt = now,
        ExpiresAt = now.AddMinutes(10),
        Subject = string.Concat("repo:octo-org/payments-", repository.ToString(System.Globalization.CultureInfo.InvariantCulture), ":environment:production"),
        Rule = "payments-deploy-prod",
        Provider = "github",
        RepositoryId = (900_000 + repository).ToString(System.Globalization.CultureInfo.InvariantCulture),
        OwnerId = (5_000 + (repository % 3)).ToString(System.Globalization.CultureInfo.InvariantCulture),
        RunId = (7_000_000_000L + repository).ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
