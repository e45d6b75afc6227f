using System.Collections.Concurrent;
using TokenBroker.Security;
using TokenBroker.Signing;

namespace TokenBroker.Tests.Security;

public sealed class RandomIdsTests
{
    [Test]
    public void Jtis_FromManyThreads_AreAllDistinct()
    {
        // Batched draws must hand every byte out once: a reused slice would repeat a jti across or within threads.
        var seen = new ConcurrentDictionary<string, byte>(StringComparer.Ordinal);
        var duplicates = 0;
        Parallel.For(0, 8, _ =>
        {
            for (var i = 0; i < 25_000; i++)
            {
                if (!seen.TryAdd(TokenMinter.NewJti(), 0))
                {
                    Interlocked.Increment(ref duplicates);
                }
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(duplicates, Is.Zero);
            Assert.That(seen, Has.Count.EqualTo(200_000));
        });
    }

    [Test]
    public void Ids_HaveTheRequestedLengthAndAlphabet()
    {
        Assert.Multiple(() =>
        {
            Assert.That(TokenMinter.NewJti(), Does.Match("^[A-Za-z0-9_-]{22}$"));
            Assert.That(RandomIds.NewBase64Url(9), Does.Match("^[A-Za-z0-9_-]{12}$"));
            Assert.That(RandomIds.NewHex(2), Does.Match("^[0-9a-f]{4}$"));
        });
    }

    [Test]
    public void Bytes_AreNotConstantAcrossABatchBoundary()
    {
        // 40 draws of 16 bytes cross the 512-byte batch boundary; every draw must differ from the one before.
        Span<byte> previous = stackalloc byte[16];
        Span<byte> current = stackalloc byte[16];
        RandomIds.Fill(previous);
        for (var i = 0; i < 40; i++)
        {
            RandomIds.Fill(current);
            Assert.That(current.SequenceEqual(previous), Is.False, $"draw {i} repeated the previous draw");
            current.CopyTo(previous);
        }
    }

    [Test]
    public void LargeRequests_AreFilledDirectly()
    {
        var a = new byte[100];
        var b = new byte[100];
        RandomIds.Fill(a);
        RandomIds.Fill(b);
        Assert.That(a.AsSpan().SequenceEqual(b), Is.False);
    }
}
