using System.Text;
using System.Text.Json;
using TokenBroker.Exchange;
using TokenBroker.Tokens;

namespace TokenBroker.Tests.Tokens;

/// <summary>
/// The vectorised strict readers (base64url, the JSON depth scan, form decoding) against straightforward
/// byte-by-byte reference versions of the same rules, on hand-picked edge cases and on many random inputs built
/// from the characters each rule cares about. A difference in any answer is a change of behaviour.
/// </summary>
public sealed class StrictReadingTests
{
    private const int RandomInputs = 20_000;

    private static IEnumerable<TestCaseData> Base64UrlCases()
    {
        yield return new TestCaseData("").SetName("Base64Url_Empty_IsAccepted");
        yield return new TestCaseData("QUJD").SetName("Base64Url_FullQuantum_IsAccepted");
        yield return new TestCaseData("QUI").SetName("Base64Url_TwoBytes_IsAccepted");
        yield return new TestCaseData("QQ").SetName("Base64Url_OneByte_IsAccepted");
        yield return new TestCaseData("QR").SetName("Base64Url_NonCanonicalTrailingBits_AreRefused");
        yield return new TestCaseData("QUJ").SetName("Base64Url_NonCanonicalTrailingBitsAfterTwoBytes_AreRefused");
        yield return new TestCaseData("Q").SetName("Base64Url_LengthOneModuloFour_IsRefused");
        yield return new TestCaseData("QQ==").SetName("Base64Url_Padding_IsRefused");
        yield return new TestCaseData("QU JD").SetName("Base64Url_InnerSpace_IsRefused");
        yield return new TestCaseData("QUJD\n").SetName("Base64Url_TrailingNewline_IsRefused");
        yield return new TestCaseData("ab+/").SetName("Base64Url_StandardAlphabet_IsRefused");
        yield return new TestCaseData("-_-_").SetName("Base64Url_UrlAlphabet_IsAccepted");
        yield return new TestCaseData(new string('A', 4 * 40) + "Ａ").SetName("Base64Url_NonAsciiLetterAfterAVectorWidth_IsRefused");
    }

    [TestCaseSource(nameof(Base64UrlCases))]
    public void Base64Url_DecidesLikeTheReference(string text) => AssertBase64UrlLikeReference(text);

    [Test]
    public void Base64Url_OnRandomInputs_DecidesAndDecodesLikeTheReference()
    {
        var random = new Random(7515);
        const string alphabet = "AQgw_-z9+/= \t\né\0";
        for (var i = 0; i < RandomInputs; i++)
        {
            AssertBase64UrlLikeReference(RandomText(random, alphabet, 70));
        }
    }

    private static IEnumerable<TestCaseData> DepthCases()
    {
        yield return new TestCaseData("{}", 1).SetName("DepthScan_OneLevelAtLimitOne_IsWithin");
        yield return new TestCaseData("{\"a\":[]}", 1).SetName("DepthScan_TwoLevelsAtLimitOne_IsDeeper");
        yield return new TestCaseData("{\"a\":\"[[[[\"}", 1).SetName("DepthScan_BracketsInsideAString_DoNotCount");
        yield return new TestCaseData("{\"a\\\"[[[\":1}", 1).SetName("DepthScan_EscapedQuote_DoesNotEndTheString");
        yield return new TestCaseData("{\"a\\\\\":[[]]}", 2).SetName("DepthScan_EscapedBackslash_EndsBeforeTheQuote");
        yield return new TestCaseData("{\"unterminated [[[[", 1).SetName("DepthScan_UnterminatedString_IsWithin");
        yield return new TestCaseData("{\"ends with escape\\", 1).SetName("DepthScan_TrailingEscape_IsWithin");
        yield return new TestCaseData("]]]]{{", 1).SetName("DepthScan_ClosersFirst_CountBelowZero");
        yield return new TestCaseData("", 0).SetName("DepthScan_Empty_IsWithin");
    }

    [TestCaseSource(nameof(DepthCases))]
    public void DepthScan_DecidesLikeTheReference(string json, int max)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        Assert.That(JwtReader.NestsDeeperThan(bytes, max), Is.EqualTo(ReferenceNestsDeeperThan(bytes, max)), json);
    }

    [Test]
    public void DepthScan_OnRandomInputs_DecidesLikeTheReference()
    {
        var random = new Random(8259);
        const string alphabet = "{}[]\"\\a:,";
        for (var i = 0; i < RandomInputs; i++)
        {
            var bytes = Encoding.ASCII.GetBytes(RandomText(random, alphabet, 90));
            var max = random.Next(0, 6);
            Assert.That(JwtReader.NestsDeeperThan(bytes, max), Is.EqualTo(ReferenceNestsDeeperThan(bytes, max)), () => $"{Encoding.ASCII.GetString(bytes)} (max {max})");
        }
    }

    private static IEnumerable<TestCaseData> DuplicateCases()
    {
        yield return new TestCaseData("{\"a\":1,\"b\":2}").SetName("Duplicates_NoneAmongDistinctNames_AreFound");
        yield return new TestCaseData("{\"a\":1,\"a\":2}").SetName("Duplicates_RepeatedName_IsFound");
        yield return new TestCaseData("{\"a\":1,\"\\u0061\":2}").SetName("Duplicates_EscapedSpellingOfAName_IsFound");
        yield return new TestCaseData("{\"a\":{\"x\":1,\"x\":2}}").SetName("Duplicates_InANestedObject_AreFound");
        yield return new TestCaseData("{\"a\":[{\"x\":1},{\"x\":2,\"y\":[{\"z\":0,\"z\":0}]}]}").SetName("Duplicates_InsideArrays_AreFound");
        yield return new TestCaseData("{\"a\":{\"x\":1},\"b\":{\"x\":2}}").SetName("Duplicates_SameNameInSiblingObjects_AreNotDuplicates");
        yield return new TestCaseData("{" + string.Join(",", Enumerable.Range(0, 100).Select(i => $"\"n{i}\":{i}")) + ",\"n42\":0}").SetName("Duplicates_InAWideObject_AreFound");
        yield return new TestCaseData("{" + string.Join(",", Enumerable.Range(0, 100).Select(i => $"\"n{i}\":{i}")) + "}").SetName("Duplicates_NoneInAWideObject_AreFound");
    }

    [TestCaseSource(nameof(DuplicateCases))]
    public void Duplicates_AreFoundLikeTheParsersOwnCheck(string json) => AssertDuplicatesLikeTheParser(Encoding.UTF8.GetBytes(json));

    [Test]
    public void Duplicates_OnRandomDocuments_AreFoundLikeTheParsersOwnCheck()
    {
        var random = new Random(8259_2);
        string[] names = ["a", "b", "ab", "\\u0061", "a\\u0062", "\\\\", "\\\"", "é", "\\u00e9", "\\ud800", "\\udbff"];
        for (var i = 0; i < RandomInputs / 4; i++)
        {
            var json = new StringBuilder();
            RandomValue(random, names, json, depth: 0);
            AssertDuplicatesLikeTheParser(Encoding.UTF8.GetBytes(json.ToString()));
        }
    }

    private static void RandomValue(Random random, string[] names, StringBuilder json, int depth)
    {
        var kind = depth == 0 ? 0 : depth > 3 ? 1 : random.Next(4);
        switch (kind)
        {
            case 0:
                json.Append('{');
                var members = random.Next(0, 6);
                for (var m = 0; m < members; m++)
                {
                    json.Append(m == 0 ? "\"" : ",\"").Append(names[random.Next(names.Length)]).Append("\":");
                    RandomValue(random, names, json, depth + 1);
                }

                json.Append('}');
                break;
            case 1:
                json.Append(random.Next(100));
                break;
            default:
                json.Append('[');
                var items = random.Next(0, 3);
                for (var n = 0; n < items; n++)
                {
                    json.Append(n == 0 ? "" : ",");
                    RandomValue(random, names, json, depth + 1);
                }

                json.Append(']');
                break;
        }
    }

    private static void AssertDuplicatesLikeTheParser(byte[] json)
    {
        // The parser's check throws InvalidOperationException, not JsonException, for some escaped names (a lone
        // surrogate); the broker refuses those documents like duplicates, so both count as refused here.
        var options = new JsonDocumentOptions { MaxDepth = 16, AllowDuplicateProperties = true };
        var expected = Outcome(() =>
        {
            try
            {
                using var strict = JsonDocument.Parse(json, options with { AllowDuplicateProperties = false });
                return true;
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException)
            {
                return false;
            }
        });

        using var document = JsonDocument.Parse(json, options);
        Assert.That(Outcome(() => JwtReader.DuplicateFree(document.RootElement, json, options)), Is.EqualTo(expected), () => Encoding.UTF8.GetString(json));
    }

    private static string Outcome(Func<bool> check)
    {
        try
        {
            return check() ? "duplicate-free" : "duplicates";
        }
        catch (InvalidOperationException e)
        {
            return e.GetType().Name;
        }
    }

    private static IEnumerable<TestCaseData> FormCases()
    {
        yield return new TestCaseData("a=b&c=d").SetName("Form_PlainFields_AreTakenAsTheyAre");
        yield return new TestCaseData("a=b+c%20d").SetName("Form_PlusAndPercent_AreDecoded");
        yield return new TestCaseData("a=%e2%82%ac%E2%82%AC").SetName("Form_HexOfEitherCase_IsDecoded");
        yield return new TestCaseData("a=%").SetName("Form_LonePercent_IsRefused");
        yield return new TestCaseData("a=%4").SetName("Form_TruncatedEscape_IsRefused");
        yield return new TestCaseData("a=%4g").SetName("Form_NonHexEscape_IsRefused");
        yield return new TestCaseData("a=%C3%28").SetName("Form_InvalidUtf8_IsRefused");
        yield return new TestCaseData("a=b\u007f").SetName("Form_RawDelete_IsRefused");
        yield return new TestCaseData("a=b\u001f").SetName("Form_RawControl_IsRefused");
        yield return new TestCaseData("a=%2B+x\u0001").SetName("Form_RawControlAfterAnEscape_IsRefused");
        yield return new TestCaseData("=b").SetName("Form_EmptyName_IsRefused");
        yield return new TestCaseData("a&&b=").SetName("Form_EmptyPairsAndValues_AreHandledLikeTheReference");
        yield return new TestCaseData("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange").SetName("Form_KnownValue_IsDecoded");
        yield return new TestCaseData("a=" + new string('x', 600) + "%41" + new string('y', 600)).SetName("Form_LongValueWithAnEscape_IsDecoded");
    }

    [TestCaseSource(nameof(FormCases))]
    public void Form_ParsesLikeTheReference(string body) => AssertFormLikeReference(Latin1(body), 32);

    [Test]
    public void Form_OnRandomInputs_ParsesLikeTheReference()
    {
        var random = new Random(1866);
        const string alphabet = "ab=&%+2F0cC\u00e9\u001f\u007f\u00ff ";
        for (var i = 0; i < RandomInputs; i++)
        {
            AssertFormLikeReference(Latin1(RandomText(random, alphabet, 40)), random.Next(1, 5));
        }
    }

    [Test]
    public void Form_KnownNamesAndValues_AreSharedStrings()
    {
        var fields = FormBody.Parse(Encoding.ASCII.GetBytes("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&audience=x"), 32, out _)!;

        Assert.Multiple(() =>
        {
            Assert.That(fields[0].Key, Is.SameAs("grant_type"));
            Assert.That(fields[0].Value, Is.SameAs(TokenTypes.TokenExchangeGrant));
            Assert.That(fields[1].Key, Is.SameAs("audience"));
        });
    }

    private static void AssertBase64UrlLikeReference(string text)
    {
        var expected = ReferenceDecode(text, out var expectedBytes);
        var actual = Base64Url.TryDecodeStrict(text, out var actualBytes);
        Assert.That(actual, Is.EqualTo(expected), () => $"'{text}'");
        Assert.That(actualBytes, Is.EqualTo(expectedBytes), () => $"'{text}'");
    }

    private static void AssertFormLikeReference(byte[] body, int maxFields)
    {
        var expected = ReferenceParse(body, maxFields, out var expectedTooMany);
        var actual = FormBody.Parse(body, maxFields, out var actualTooMany);
        var shown = Encoding.Latin1.GetString(body);
        Assert.That(actualTooMany, Is.EqualTo(expectedTooMany), shown);
        Assert.That(actual, Is.EqualTo(expected), shown);
    }

    private static string RandomText(Random random, string alphabet, int maxLength)
    {
        var chars = new char[random.Next(0, maxLength)];
        for (var i = 0; i < chars.Length; i++)
        {
            chars[i] = alphabet[random.Next(alphabet.Length)];
        }

        return new string(chars);
    }

    private static byte[] Latin1(string text) => Encoding.Latin1.GetBytes(text);

    // The reference versions: the per-character rules as first written.

    private static bool ReferenceDecode(string text, out byte[] bytes)
    {
        bytes = [];
        if (text.Length % 4 == 1)
        {
            return false;
        }

        foreach (var c in text)
        {
            if (!(c is >= 'A' and <= 'Z' or >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '_'))
            {
                return false;
            }
        }

        if (text.Length % 4 != 0)
        {
            var c = text[^1];
            var last = c switch
            {
                >= 'A' and <= 'Z' => c - 'A',
                >= 'a' and <= 'z' => c - 'a' + 26,
                >= '0' and <= '9' => c - '0' + 52,
                '-' => 62,
                _ => 63,
            };
            if ((last & ((1 << (text.Length % 4 == 2 ? 4 : 2)) - 1)) != 0)
            {
                return false;
            }
        }

        bytes = System.Buffers.Text.Base64Url.DecodeFromChars(text);
        return true;
    }

    private static bool ReferenceNestsDeeperThan(byte[] json, int max)
    {
        var depth = 0;
        var inString = false;
        for (var i = 0; i < json.Length; i++)
        {
            var b = json[i];
            if (inString)
            {
                if (b == (byte)'\\')
                {
                    i++;
                }
                else if (b == (byte)'"')
                {
                    inString = false;
                }

                continue;
            }

            switch (b)
            {
                case (byte)'"':
                    inString = true;
                    break;
                case (byte)'{' or (byte)'[':
                    if (++depth > max)
                    {
                        return true;
                    }

                    break;
                case (byte)'}' or (byte)']':
                    depth--;
                    break;
            }
        }

        return false;
    }

    private static List<KeyValuePair<string, string>>? ReferenceParse(byte[] body, int maxFields, out bool tooManyFields)
    {
        tooManyFields = false;
        var fields = new List<KeyValuePair<string, string>>();
        foreach (var pair in Encoding.Latin1.GetString(body).Split('&'))
        {
            if (pair.Length == 0)
            {
                continue;
            }

            if (fields.Count == maxFields)
            {
                tooManyFields = true;
                return null;
            }

            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var name = ReferenceFormDecode(eq < 0 ? pair : pair[..eq]);
            var value = eq < 0 ? string.Empty : ReferenceFormDecode(pair[(eq + 1)..]);
            if (name is null || value is null || name.Length == 0)
            {
                return null;
            }

            fields.Add(new(name, value));
        }

        return fields;
    }

    private static string? ReferenceFormDecode(string encoded)
    {
        var bytes = new List<byte>();
        for (var i = 0; i < encoded.Length; i++)
        {
            var c = encoded[i];
            if (c == '+')
            {
                bytes.Add((byte)' ');
            }
            else if (c == '%')
            {
                if (i + 2 >= encoded.Length || !Uri.IsHexDigit(encoded[i + 1]) || !Uri.IsHexDigit(encoded[i + 2]))
                {
                    return null;
                }

                bytes.Add(Convert.ToByte(encoded.Substring(i + 1, 2), 16));
                i += 2;
            }
            else if (c < 0x20 || c > 0x7E)
            {
                return null;
            }
            else
            {
                bytes.Add((byte)c);
            }
        }

        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes.ToArray());
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }
}
