using System.Security.Cryptography;
using System.Text;

namespace TokenBroker.State.Tests;

/// <summary>
/// The contract every <see cref="IStateStore"/> keeps, run against each implementation: in-memory, a single Redis
/// server and a three-master Redis Cluster. Times are real (short TTLs), since Redis expires keys on its own clock.
/// </summary>
public abstract class StateStoreContract
{
    protected IStateStore Store { get; private set; } = null!;

    /// <summary>A fresh, empty store (each test gets its own keys).</summary>
    protected abstract Task<IStateStore> CreateStoreAsync();

    [SetUp]
    public async Task CreateStore() => Store = await CreateStoreAsync();

    [TearDown]
    public void DisposeStore() => (Store as IDisposable)?.Dispose();

    internal static string ReplayKey(string seed) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(seed + Guid.NewGuid())));

    internal static string Jti(string replayKey) => StateKeys.ShardTag(replayKey) + Convert.ToBase64String(RandomNumberGenerator.GetBytes(16)).Replace('+', '-').Replace('/', '_').TrimEnd('=');

    internal static IssuedTokenRecord Record(string replayKey, TimeSpan? lifetime = null)
    {
        var now = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        return new IssuedTokenRecord
        {
            Jti = Jti(replayKey),
            IssuedAt = now,
            ExpiresAt = now + (lifetime ?? TimeSpan.FromMinutes(10)),
            Subject = "github:octo-org/payments:production",
            Rule = "payments-deploy-prod",
            Provider = "github",
            RepositoryId = "900101",
            OwnerId = "5001",
            RunId = "7000123456",
        };
    }

    private static DateTimeOffset InMinutes(int minutes) => DateTimeOffset.UtcNow.AddMinutes(minutes);

    [Test]
    public async Task RecordIssued_WithoutAReplayMark_IsReadBackAndRevocable()
    {
        var record = Record(ReplayKey("downscoped"));

        await Store.RecordIssuedAsync(record, CancellationToken.None);

        Assert.That(await Store.GetIssuedAsync(record.Jti, CancellationToken.None), Is.EqualTo(record));
        Assert.That(await Store.RevokeAsync(record.Jti, DateTimeOffset.UtcNow, CancellationToken.None), Is.True);
        Assert.That((await Store.GetIssuedAsync(record.Jti, CancellationToken.None))!.RevokedAt, Is.Not.Null);
    }

    [Test]
    public async Task RecordIssued_ExpiresWithTheToken()
    {
        var record = Record(ReplayKey("short"), TimeSpan.FromSeconds(1));

        await Store.RecordIssuedAsync(record, CancellationToken.None);
        await Task.Delay(TimeSpan.FromSeconds(2.2));

        Assert.That(await Store.GetIssuedAsync(record.Jti, CancellationToken.None), Is.Null);
    }

    [Test]
    public async Task AJobTokenIsConsumedOnce_AndTheSecondAttemptRecordsNothing()
    {
        var key = ReplayKey("once");
        var first = Record(key);
        var second = Record(key);

        Assert.That(await Store.TryConsumeAsync(key, InMinutes(5), first, CancellationToken.None), Is.True);
        Assert.That(await Store.TryConsumeAsync(key, InMinutes(5), second, CancellationToken.None), Is.False);
        Assert.That(await Store.GetIssuedAsync(second.Jti, CancellationToken.None), Is.Null);
    }

    [Test]
    public async Task UnderContention_ExactlyOneConsumerPerKeyWins()
    {
        var keys = Enumerable.Range(0, 10).Select(i => ReplayKey("contention" + i)).ToArray();

        var results = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => Task.Run(async () =>
        {
            var key = keys[i % keys.Length];
            return await Store.TryConsumeAsync(key, InMinutes(5), Record(key), CancellationToken.None);
        })));

        Assert.That(results.Count(r => r), Is.EqualTo(10));
    }

    [Test]
    public async Task TheIssuedRecord_IsReadBackByJtiWithEveryField()
    {
        var key = ReplayKey("record");
        var record = Record(key);
        await Store.TryConsumeAsync(key, InMinutes(5), record, CancellationToken.None);

        var read = await Store.GetIssuedAsync(record.Jti, CancellationToken.None);

        Assert.That(read, Is.EqualTo(record));
    }

    [Test]
    public async Task UnknownAndMalformedJtis_HaveNoRecord()
    {
        Assert.That(await Store.GetIssuedAsync("abcd" + "unknown-jti-000000000000", CancellationToken.None), Is.Null);
        Assert.That(await Store.GetIssuedAsync("x", CancellationToken.None), Is.Null);
        Assert.That(await Store.GetIssuedAsync("{}{}:*?", CancellationToken.None), Is.Null);
    }

    [Test]
    public async Task AnIssuedJtiWithoutTheReplayKeysShardTag_IsRejected()
    {
        var key = ReplayKey("tag");
        var record = Record(ReplayKey("other")) with { Jti = "zzzz" + "mismatch" };

        Assert.That(async () => await Store.TryConsumeAsync(key, InMinutes(5), record, CancellationToken.None), Throws.ArgumentException);
    }

    [Test]
    public async Task Release_FreesTheJobTokenOnlyForTheTokenThatHoldsIt()
    {
        var key = ReplayKey("release");
        var owner = Record(key);
        await Store.TryConsumeAsync(key, InMinutes(5), owner, CancellationToken.None);

        await Store.ReleaseAsync(key, Jti(key), CancellationToken.None);
        Assert.That(await Store.TryConsumeAsync(key, InMinutes(5), Record(key), CancellationToken.None), Is.False, "someone else's release must not free the mark");

        await Store.ReleaseAsync(key, owner.Jti, CancellationToken.None);
        var retry = Record(key);
        Assert.That(await Store.TryConsumeAsync(key, InMinutes(5), retry, CancellationToken.None), Is.True);
        Assert.That(await Store.GetIssuedAsync(owner.Jti, CancellationToken.None), Is.Null, "the released token's record is gone");
        Assert.That(await Store.GetIssuedAsync(retry.Jti, CancellationToken.None), Is.Not.Null);
    }

    [Test]
    public async Task ReplayMarksAndRecords_ExpireOnTheirOwn()
    {
        var key = ReplayKey("expiry");
        var shortLived = Record(key, lifetime: TimeSpan.FromSeconds(1));
        await Store.TryConsumeAsync(key, DateTimeOffset.UtcNow.AddMilliseconds(900), shortLived, CancellationToken.None);

        await Task.Delay(TimeSpan.FromMilliseconds(1200));

        Assert.That(await Store.GetIssuedAsync(shortLived.Jti, CancellationToken.None), Is.Null, "the record expires with the token");
        Assert.That(await Store.TryConsumeAsync(key, InMinutes(5), Record(key), CancellationToken.None), Is.True, "the mark expires with the job token");
    }

    [Test]
    public async Task Revoke_MarksAKnownToken_KeepsTheFirstTime_AndIgnoresUnknownOnes()
    {
        var key = ReplayKey("revoke");
        var record = Record(key);
        await Store.TryConsumeAsync(key, InMinutes(5), record, CancellationToken.None);
        var first = DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

        Assert.That(await Store.RevokeAsync(record.Jti, first, CancellationToken.None), Is.True);
        Assert.That(await Store.RevokeAsync(record.Jti, first.AddMinutes(1), CancellationToken.None), Is.True);
        Assert.That((await Store.GetIssuedAsync(record.Jti, CancellationToken.None))!.RevokedAt, Is.EqualTo(first));
        Assert.That(await Store.RevokeAsync(Jti(ReplayKey("nobody")), first, CancellationToken.None), Is.False);
        Assert.That(await Store.RevokeAsync("junk", first, CancellationToken.None), Is.False);
    }

    [Test]
    public async Task Blocks_AreAddedListedAndRemoved_WithAGrowingVersion()
    {
        var before = await Store.GetBlocksAsync(CancellationToken.None);
        var block = new Block
        {
            Id = "blk_" + Guid.NewGuid().ToString("N"),
            Selector = new BlockSelector { RepositoryId = "900101", IssuedBefore = DateTimeOffset.FromUnixTimeSeconds(1900000000) },
            CreatedAt = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()),
            CreatedBy = "ci-admin",
            Reason = "incident 42",
        };

        var added = await Store.AddBlockAsync(block, CancellationToken.None);
        var after = await Store.GetBlocksAsync(CancellationToken.None);

        Assert.That(added, Is.GreaterThan(before.Version));
        Assert.That(after.Version, Is.EqualTo(added));
        Assert.That(after.Blocks, Has.Some.EqualTo(block));

        Assert.That(await Store.RemoveBlockAsync(block.Id, CancellationToken.None), Is.True);
        Assert.That(await Store.RemoveBlockAsync(block.Id, CancellationToken.None), Is.False);
        var removed = await Store.GetBlocksAsync(CancellationToken.None);
        Assert.That(removed.Blocks.Select(b => b.Id), Has.No.Member(block.Id));
        Assert.That(removed.Version, Is.GreaterThan(added));
    }

    [Test]
    public async Task AddingABlock_NotifiesListeners()
    {
        var notified = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Store.BlocksChanged += () => notified.TrySetResult();

        await Store.AddBlockAsync(new Block { Id = "blk_n", Selector = new BlockSelector { RunId = "1" }, CreatedAt = DateTimeOffset.UtcNow, CreatedBy = "t" }, CancellationToken.None);

        Assert.That(await Task.WhenAny(notified.Task, Task.Delay(TimeSpan.FromSeconds(1))), Is.SameAs(notified.Task), "notified within 1 s");
    }

    private static KeyRotation Rotation(string kid) => new()
    {
        KeyId = kid,
        Algorithm = "ES256",
        ActivateAt = DateTimeOffset.FromUnixTimeSeconds(1900000600),
        RequestedAt = DateTimeOffset.FromUnixTimeSeconds(1900000000),
        RequestedBy = "ci-admin",
        RetiringKeyId = "es-old",
        Reason = "quarterly",
    };

    [Test]
    public async Task KeyRotations_AreRecordedOnlyAgainstTheVersionRead_AndOncePerKey()
    {
        var before = await Store.GetKeyRotationsAsync(CancellationToken.None);
        Assert.That(before.Rotations, Is.Empty);

        var added = await Store.TryAddKeyRotationAsync(before.Version, Rotation("es-a"), CancellationToken.None);
        Assert.That(added, Is.EqualTo(before.Version + 1));
        Assert.That(await Store.TryAddKeyRotationAsync(before.Version, Rotation("es-b"), CancellationToken.None), Is.Null, "a stale version loses");
        Assert.That(await Store.TryAddKeyRotationAsync(added!.Value, Rotation("es-a"), CancellationToken.None), Is.Null, "a key is promoted at most once");

        var after = await Store.GetKeyRotationsAsync(CancellationToken.None);
        Assert.That(after.Version, Is.EqualTo(added));
        Assert.That(after.Rotations, Is.EqualTo(new[] { Rotation("es-a") }));
    }

    [Test]
    public async Task AddingAKeyRotation_NotifiesListeners()
    {
        var notified = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Store.KeyRotationsChanged += () => notified.TrySetResult();

        Assert.That(await Store.TryAddKeyRotationAsync(0, Rotation("es-n"), CancellationToken.None), Is.EqualTo(1));

        Assert.That(await Task.WhenAny(notified.Task, Task.Delay(TimeSpan.FromSeconds(1))), Is.SameAs(notified.Task), "notified within 1 s");
    }

    [Test]
    public async Task Ping_Answers()
    {
        Assert.That(await Store.PingAsync(CancellationToken.None), Is.True);
    }
}

[TestFixture]
public sealed class InMemoryStateStoreContractTests : StateStoreContract
{
    protected override Task<IStateStore> CreateStoreAsync() => Task.FromResult<IStateStore>(new InMemoryStateStore(TimeProvider.System));
}
