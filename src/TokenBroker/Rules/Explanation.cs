using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using TokenBroker.Errors;
using TokenBroker.Exchange;
using TokenBroker.Rules.Evaluation;
using TokenBroker.Rules.Model;
using TokenBroker.Rules.Providers;
using TokenBroker.Signing;

namespace TokenBroker.Rules;

/// <summary>Where the claims of an explanation came from.</summary>
/// <param name="Kind"><c>token</c>, <c>claims</c> or <c>request</c> (a live exchange).</param>
/// <param name="Description">For people, e.g. the file name or the request id.</param>
/// <param name="SignatureVerified">False for <c>rules explain --token</c>: the token was only decoded.</param>
internal sealed record ExplainSource(string Kind, string Description, bool SignatureVerified);

/// <summary>How one rule fared, in declared order.</summary>
internal sealed record RuleExplanation(TrustRule Rule, RuleVerdict Verdict, IReadOnlyList<ConditionTrace> Conditions, string? PullRequestGuard);

/// <summary>What happened to one rule during an evaluation.</summary>
internal enum RuleVerdict
{
    /// <summary>The rule decided the request (granted, or refused on scope, audience count or a template claim).</summary>
    Decides,

    /// <summary>The conditions hold but the rule does not grant every requested audience; evaluation went on.</summary>
    AudiencesNotGranted,

    /// <summary>The conditions hold but the token is from a pull-request event and the rule's stage is not read.</summary>
    PullRequestGuard,

    /// <summary>At least one condition failed.</summary>
    NoMatch,

    /// <summary>An earlier rule decided; the conditions are shown for reference.</summary>
    NotReached,
}

/// <summary>
/// A dry-run explanation of one policy decision: every rule with every condition, the deciding rule, and the
/// claims of the token that would be issued or the exact refusal. <c>rules explain</c> prints it; the exchange
/// puts it into the audit event of a refused request.
/// </summary>
internal sealed record Explanation
{
    public required ExplainSource Source { get; init; }
    public required string Provider { get; init; }
    public required PolicyRequest Request { get; init; }
    public required IReadOnlyList<RuleExplanation> Rules { get; init; }
    public required int OtherProviderRules { get; init; }
    public required PolicyDecision Decision { get; init; }

    /// <summary>The refusal, when the decision is not a grant.</summary>
    public BrokerError? Refusal { get; init; }

    /// <summary>The claims of the token that would be issued, when granted.</summary>
    public MintRequest? Issued { get; init; }

    /// <summary>
    /// Checks the broker makes before any rule that these (unverified) claims would already fail, e.g. an
    /// <c>aud</c> that is not the provider's audience. Set by <c>rules explain</c>; empty for live requests.
    /// </summary>
    public IReadOnlyList<string> Notes { get; init; } = [];

    /// <summary>Raw values of the claims conditions read, to show why a derived value (e.g. <c>tag</c>) is absent.</summary>
    public IReadOnlyDictionary<string, string> SourceValues { get; init; } = new Dictionary<string, string>();

    /// <summary>Evaluates with a trace and explains. <paramref name="issuer"/> and <paramref name="now"/> shape the would-be token.</summary>
    public static Explanation Create(RuleSet rules, ProviderDescriptor provider, IJobClaims claims, PolicyRequest request, ExplainSource source, string issuer, DateTimeOffset now)
    {
        var decision = PolicyEvaluator.Evaluate(rules, provider, claims, request, trace: true);
        var traces = (decision.Trace ?? []).ToDictionary(t => t.RuleId, StringComparer.Ordinal);
        var decides = decision.Outcome is not (PolicyOutcome.NoRuleMatched or PolicyOutcome.AudienceNotGranted) ? decision.Rule : null;
        var explained = new List<RuleExplanation>();
        foreach (var rule in rules.ForProvider(request.Provider))
        {
            if (!traces.TryGetValue(rule.Id, out var trace))
            {
                explained.Add(new RuleExplanation(rule, RuleVerdict.NotReached, PolicyEvaluator.TraceRule(rule, claims), null));
                continue;
            }

            var verdict = ReferenceEquals(rule, decides) ? RuleVerdict.Decides
                : trace.PullRequestGuard is not null ? RuleVerdict.PullRequestGuard
                : trace.ConditionsHeld ? RuleVerdict.AudiencesNotGranted
                : RuleVerdict.NoMatch;
            explained.Add(new RuleExplanation(rule, verdict, trace.Conditions, trace.PullRequestGuard));
        }

        return new Explanation
        {
            Source = source,
            Provider = request.Provider,
            Request = request,
            Rules = explained,
            OtherProviderRules = rules.Rules.Count - explained.Count,
            Decision = decision,
            Refusal = decision.IsGranted ? null : BrokerErrors.ForPolicy(decision.Outcome),
            Issued = decision.IsGranted ? IssuedClaims.Build(issuer, provider, claims, decision, now, null, JtiPlaceholder, null) : null,
            SourceValues = explained.SelectMany(r => r.Conditions).Select(c => c.Source).Distinct(StringComparer.Ordinal)
                .Select(name => (name, value: claims.Get(name))).Where(x => x.value is not null)
                .ToDictionary(x => x.name, x => x.value!, StringComparer.Ordinal),
        };
    }

    /// <summary>False only for the explanation of a live exchange, recorded in its audit event.</summary>
    public bool IsDryRun => Source.Kind != "request";

    /// <summary>Stands in for the random <c>jti</c> the broker assigns when it really issues a token.</summary>
    public const string JtiPlaceholder = "(assigned at issue)";

    private static readonly JsonWriterOptions JsonOptions = new() { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The explanation for people.</summary>
    public string ToText()
    {
        var sb = new StringBuilder();
        sb.AppendLine(IsDryRun ? "DRY RUN: nothing is issued, recorded or consumed." : "LIVE REQUEST: the broker's own evaluation of this exchange.");
        sb.Append("Input:    ").AppendLine(Source.Kind switch
        {
            "token" => $"{Source.Description}, DECODED WITHOUT SIGNATURE VERIFICATION: issuer, signature, audience and expiry were not checked (the broker checks them before any rule)",
            "request" => $"{Source.Description} (job token verified by the broker)",
            _ => $"{Source.Description} (claims taken as given; no token was verified)",
        });
        foreach (var note in Notes)
        {
            sb.Append("Note:     ").AppendLine(note);
        }

        sb.Append("Provider: ").Append(Provider).Append(" (").Append(Rules.Count).Append(Rules.Count == 1 ? " rule" : " rules");
        if (OtherProviderRules > 0)
        {
            sb.Append("; ").Append(OtherProviderRules).Append(" rule(s) of other providers are not considered");
        }

        sb.AppendLine(")");
        sb.Append("Request:  audiences ").Append(Request.Audiences.Count == 0 ? "(none: the deciding rule must grant exactly one)" : "[" + string.Join(", ", Request.Audiences) + "]");
        sb.Append("; scopes ").AppendLine(Request.Scopes is null ? "(not given: every scope of the deciding rule)" : "[" + string.Join(", ", Request.Scopes) + "]");
        for (var i = 0; i < Rules.Count; i++)
        {
            var r = Rules[i];
            sb.AppendLine();
            sb.Append("Rule ").Append(i + 1).Append('/').Append(Rules.Count).Append(' ').Append(r.Rule.Id).Append(" (").Append(r.Rule.Location).Append("): ").AppendLine(VerdictText(r));
            foreach (var c in r.Conditions)
            {
                sb.Append("  ").Append(c.Held ? "held  " : "FAILED").Append("  ").Append(c.Claim);
                if (c.Source != c.Claim)
                {
                    sb.Append(" (claim ").Append(c.Source).Append(')');
                }

                sb.Append(": expected ").Append(c.Expected).Append(", token has ");
                sb.AppendLine(c.Actual is not null ? Quote(c.Actual)
                    : c.Source != c.Claim && SourceValues.TryGetValue(c.Source, out var raw) ? $"no '{c.Claim}' (its '{c.Source}' is {Quote(raw)})"
                    : "no such claim");
            }
        }

        sb.AppendLine();
        if (Decision.IsGranted)
        {
            sb.Append("Decision: GRANTED by rule ").AppendLine(Decision.Rule!.Id);
            sb.AppendLine($"Claims of the token that would be issued (unsigned; jti is assigned and iat/nbf/exp are set when the broker issues it; a shorter requested_lifetime lowers exp):");
            sb.AppendLine(TokenMinter.PayloadJson(Issued!, indented: true));
        }
        else
        {
            sb.Append("Decision: REFUSED ").Append(Refusal!.Code).Append(' ').Append(Refusal.Id).Append(": ").AppendLine(Refusal.Description);
            sb.Append("  detail: ").AppendLine(Decision.Detail);
        }

        return sb.ToString();
    }

    private string VerdictText(RuleExplanation r) => r.Verdict switch
    {
        RuleVerdict.Decides when Decision.IsGranted => "DECIDES (grants the request)",
        RuleVerdict.Decides => $"DECIDES (refuses: {Decision.Detail})",
        RuleVerdict.AudiencesNotGranted => $"conditions hold, but it does not grant every requested audience (grants [{string.Join(", ", r.Rule.Grant.Audiences)}]); evaluation continues",
        RuleVerdict.PullRequestGuard => $"skipped: {r.PullRequestGuard}",
        RuleVerdict.NoMatch => $"no match ({r.Conditions.Count(c => !c.Held)} of {r.Conditions.Count} conditions failed)",
        _ => "not reached (an earlier rule decided); conditions shown for reference",
    };

    private static string VerdictCode(RuleVerdict verdict) => verdict switch
    {
        RuleVerdict.Decides => "decides",
        RuleVerdict.AudiencesNotGranted => "audiences_not_granted",
        RuleVerdict.PullRequestGuard => "pull_request_guard",
        RuleVerdict.NoMatch => "no_match",
        _ => "not_reached",
    };

    /// <summary>
    /// A value as a quoted string with every character outside printable ASCII escaped as <c>\uXXXX</c>, so that
    /// trailing newlines, zero-width characters and look-alikes (a Kelvin sign for K) are visible.
    /// </summary>
    internal static string Quote(string value)
    {
        var sb = new StringBuilder(value.Length + 2).Append('"');
        foreach (var c in value)
        {
            switch (c)
            {
                case '"':
                    sb.Append("\\\"");
                    break;
                case '\\':
                    sb.Append("\\\\");
                    break;
                case '\n':
                    sb.Append("\\n");
                    break;
                case '\r':
                    sb.Append("\\r");
                    break;
                case '\t':
                    sb.Append("\\t");
                    break;
                default:
                    if (c < 0x20 || c > 0x7E)
                    {
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }

                    break;
            }
        }

        return sb.Append('"').ToString();
    }

    /// <summary>The explanation as JSON (stable shape, documented in docs/rules.md). At most <paramref name="maxRules"/> rules are listed.</summary>
    public string ToJson(bool indented = true, int maxRules = int.MaxValue)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        using (var w = new Utf8JsonWriter(buffer, JsonOptions with { Indented = indented }))
        {
            w.WriteStartObject();
            w.WriteBoolean("dry_run", IsDryRun);
            w.WriteStartObject("input");
            w.WriteString("kind", Source.Kind);
            w.WriteString("description", Source.Description);
            w.WriteBoolean("signature_verified", Source.SignatureVerified);
            w.WriteString("provider", Provider);
            WriteList(w, "audiences", Request.Audiences);
            if (Request.Scopes is null)
            {
                w.WriteNull("scopes");
            }
            else
            {
                WriteList(w, "scopes", Request.Scopes);
            }

            w.WriteEndObject();
            if (Notes.Count > 0)
            {
                WriteList(w, "notes", Notes);
            }

            w.WriteNumber("other_provider_rules", OtherProviderRules);
            w.WriteStartArray("rules");
            foreach (var r in Rules.Take(maxRules))
            {
                w.WriteStartObject();
                w.WriteString("id", r.Rule.Id);
                w.WriteString("file", r.Rule.Location.File);
                w.WriteNumber("line", r.Rule.Location.Line);
                w.WriteNumber("column", r.Rule.Location.Column);
                w.WriteString("verdict", VerdictCode(r.Verdict));
                if (r.PullRequestGuard is not null)
                {
                    w.WriteString("pull_request_guard", r.PullRequestGuard);
                }

                w.WriteStartArray("conditions");
                foreach (var c in r.Conditions)
                {
                    w.WriteStartObject();
                    w.WriteString("claim", c.Claim);
                    w.WriteString("source", c.Source);
                    w.WriteString("expected", c.Expected);
                    if (c.Actual is null)
                    {
                        w.WriteNull("actual");
                        if (c.Source != c.Claim && SourceValues.TryGetValue(c.Source, out var raw))
                        {
                            w.WriteString("source_actual", raw);
                        }
                    }
                    else
                    {
                        w.WriteString("actual", c.Actual);
                    }

                    w.WriteBoolean("held", c.Held);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
            if (Rules.Count > maxRules)
            {
                w.WriteNumber("rules_omitted", Rules.Count - maxRules);
            }

            w.WriteStartObject("decision");
            w.WriteString("outcome", Decision.IsGranted ? "granted" : "refused");
            if (Decision.Rule is not null)
            {
                w.WriteString("rule", Decision.Rule.Id);
            }

            if (Refusal is not null)
            {
                w.WriteString("error", Refusal.Code);
                w.WriteString("error_id", Refusal.Id);
                w.WriteString("error_description", Refusal.Description);
                w.WriteString("detail", Decision.Detail);
            }

            w.WriteEndObject();
            if (Issued is not null)
            {
                w.WritePropertyName("issued_claims");
                TokenMinter.WritePayload(w, Issued);
            }

            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void WriteList(Utf8JsonWriter w, string name, IReadOnlyList<string> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values)
        {
            w.WriteStringValue(v);
        }

        w.WriteEndArray();
    }
}
