using System.Security.Cryptography;
using System.Text;
using TokenBroker.Audit;
using TokenBroker.Exchange;

namespace TokenBroker.Tests.Audit;

/// <summary>The token hashes in audit lines and the replay key are fixed formulas; the buffer handling must not change them.</summary>
[TestFixture]
public sealed class TokenHashTests
{
    private static string Reference(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    private static IEnumerable<TestCaseData> Texts()
    {
        yield return new TestCaseData("").SetName("Hash_Empty");
        yield return new TestCaseData("eyJhbGciOiJSUzI1NiJ9.e30.c2ln").SetName("Hash_ShortToken");
        yield return new TestCaseData(new string('a', 169)).SetName("Hash_JustUnderTheStackBuffer");
        yield return new TestCaseData(new string('a', 170)).SetName("Hash_JustOverTheStackBufferAtWorstCaseUtf8");
        yield return new TestCaseData(new string('x', 1200) + ".sig").SetName("Hash_TokenSizedInput");
        yield return new TestCaseData("répo/ü-" + new string('€', 300) + "\U0001F600").SetName("Hash_NonAscii");
        yield return new TestCaseData("broken \uD800 surrogate").SetName("Hash_UnpairedSurrogate");
    }

    [TestCaseSource(nameof(Texts))]
    public void Hash_IsHexSha256OfTheUtf8Bytes(string text) =>
        Assert.That(AuditEvent.Hash(text), Is.EqualTo(Reference(text)));

    [Test]
    public void Hash_KnownVector() =>
        Assert.That(AuditEvent.Hash("abc"), Is.EqualTo("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));

    [TestCase("https://token.actions.githubusercontent.com", "6f1d1f0e-0bd5-4d5a-9d2f-4c8e0f6c4d1a")]
    [TestCase("", "")]
    [TestCase("https://gitlab.example/ü", "jti|with:separators")]
    public void ReplayKey_IsSha256OfTheLengthPrefixedPair(string issuer, string jti) =>
        Assert.That(ExchangeHandler.ReplayKey(issuer, jti), Is.EqualTo(Reference($"{issuer.Length}:{issuer}|{jti.Length}:{jti}")));

    [Test]
    public void ReplayKey_LongIssuerAndJti_Match()
    {
        var issuer = "https://" + new string('i', 600);
        var jti = new string('j', 900);
        Assert.That(ExchangeHandler.ReplayKey(issuer, jti), Is.EqualTo(Reference($"{issuer.Length}:{issuer}|{jti.Length}:{jti}")));
    }

    [Test]
    public void ReplayKey_PairsThatConcatenateAlike_Differ() =>
        Assert.That(ExchangeHandler.ReplayKey("ab", "c"), Is.Not.EqualTo(ExchangeHandler.ReplayKey("a", "bc")));
}
