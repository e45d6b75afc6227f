using TokenBroker.Rules.Loading;

namespace TokenBroker.Rules.Tests.Loading;

[TestFixture]
public sealed class DurationTests
{
    private static IEnumerable<TestCaseData> Durations()
    {
        static TestCaseData D(string text, long seconds) => new TestCaseData(text, TimeSpan.FromSeconds(seconds)).SetArgDisplayNames($"\"{text}\"");

        yield return D("90s", 90);
        yield return D("10m", 600);
        yield return D("1h", 3600);
        yield return D("1h30m", 5400);
        yield return D("1h30m15s", 5415);
        yield return D("2h5s", 7205);
        yield return D("90m", 5400);
        yield return D("0s", 0);
        yield return D("007m", 420);
        yield return D("1000000s", 1_000_000);
        yield return D("1000000h", 3_600_000_000);
    }

    [TestCaseSource(nameof(Durations))]
    public void TryParseDuration_WithValidText_ReturnsTheDuration(string text, TimeSpan expected)
    {
        var ok = RuleCompiler.TryParseDuration(text, out var value);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ok, Is.True);
            Assert.That(value, Is.EqualTo(expected));
        }
    }

    private static IEnumerable<TestCaseData> NotDurations() =>
        new[]
        {
            "", "10", "m", "1d", "1.5h", "-1m", "+5m", " 10m", "10m ", "10 m", "10M", "1H", "5m1h", "1s1m", "1h1h",
            "1000001s", "9999999h", "10000000s", "\u0661\u0660m", "10m\n", "PT10M", "00:10:00",
        }.Select(t => new TestCaseData(t).SetArgDisplayNames($"\"{t.Replace("\n", "\\n", StringComparison.Ordinal)}\""));

    [TestCaseSource(nameof(NotDurations))]
    public void TryParseDuration_WithInvalidText_ReturnsFalseAndZero(string text)
    {
        var ok = RuleCompiler.TryParseDuration(text, out var value);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ok, Is.False);
            Assert.That(value, Is.EqualTo(TimeSpan.Zero));
        }
    }

    private static IEnumerable<TestCaseData> Formats()
    {
        static TestCaseData F(int seconds, string text) => new TestCaseData(TimeSpan.FromSeconds(seconds), text).SetArgDisplayNames(text);

        yield return F(0, "0s");
        yield return F(1, "1s");
        yield return F(59, "59s");
        yield return F(60, "1m");
        yield return F(90, "1m30s");
        yield return F(600, "10m");
        yield return F(3600, "1h");
        yield return F(3601, "1h1s");
        yield return F(3661, "1h1m1s");
        yield return F(5400, "1h30m");
        yield return F(90_000, "25h");
    }

    [TestCaseSource(nameof(Formats))]
    public void FormatDuration_WritesTheShortestRuleSpelling(TimeSpan value, string expected) =>
        Assert.That(RuleCompiler.FormatDuration(value), Is.EqualTo(expected));

    [Test]
    public void FormatDuration_DropsFractionsOfASecond() =>
        Assert.That(RuleCompiler.FormatDuration(TimeSpan.FromMilliseconds(90_999)), Is.EqualTo("1m30s"));

    [TestCaseSource(nameof(Formats))]
    public void FormatDuration_ParsesBackToTheSameValue(TimeSpan value, string text)
    {
        var ok = RuleCompiler.TryParseDuration(RuleCompiler.FormatDuration(value), out var parsed);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(ok, Is.True, text);
            Assert.That(parsed, Is.EqualTo(value));
        }
    }
}
