using TokenBroker.Rules.Model;
using TokenBroker.Rules.Providers;

namespace TokenBroker.Rules.Evaluation;

/// <summary>
/// Decides a request against a rule set: default deny; the first rule in declared order whose conditions all hold
/// and which grants every requested audience decides. Pure and allocation-light; safe to share between threads.
/// </summary>
public static class PolicyEvaluator
{
    public static PolicyDecision Evaluate(RuleSet rules, ProviderDescriptor provider, IJobClaims claims, PolicyRequest request, bool trace = false)
    {
        var traces = trace ? new List<RuleTrace>() : null;
        var eventAccessor = provider.Vocabulary.Neutral("event");
        var eventValue = eventAccessor?.Read(claims);
        var isPullRequest = eventValue is not null && provider.Vocabulary.PullRequestEvents.Contains(eventValue);
        var firstConditionMatch = (TrustRule?)null;

        // A trace explains every rule; a decision only needs the candidates the index leaves (same order, same result).
        var candidates = rules.Candidates(request.Provider, claims, all: trace);
        foreach (var rule in candidates)
        {
            List<ConditionTrace>? conditionTraces = null;
            var held = trace ? TraceConditions(rule, claims, out conditionTraces) : ConditionsHold(rule, claims);
            string? guard = null;
            if (held && isPullRequest && rule.Grant.Stage != TrustRule.ReadStage && !rule.AllowPullRequests)
            {
                guard = $"token is from a '{eventValue}' event; stage '{rule.Grant.Stage}' needs allow_pull_requests: true";
                held = false;
            }

            bool? audiencesOk = null;
            if (held)
            {
                firstConditionMatch ??= rule;
                audiencesOk = GrantsAudiences(rule, request.Audiences);
            }

            traces?.Add(new RuleTrace(rule.Id, conditionTraces ?? [], guard, held, audiencesOk));
            if (audiencesOk == true)
            {
                return Decide(rule, provider, claims, request, traces);
            }
        }

        return firstConditionMatch is null
            ? new PolicyDecision
            {
                Outcome = PolicyOutcome.NoRuleMatched,
                Detail = $"no rule for provider '{request.Provider}' matches the token ({rules.ForProvider(request.Provider).Length} rules evaluated)",
                Trace = traces,
            }
            : new PolicyDecision
            {
                Outcome = PolicyOutcome.AudienceNotGranted,
                Rule = firstConditionMatch,
                Detail = $"rules match the token (first: '{firstConditionMatch.Id}') but none grants audiences [{string.Join(", ", request.Audiences)}]",
                Trace = traces,
            };
    }

    private static bool ConditionsHold(TrustRule rule, IJobClaims claims)
    {
        // Indexed loops: foreach over IReadOnlyList boxes an enumerator per rule on the hot path.
        var conditions = rule.Conditions;
        for (var i = 0; i < conditions.Count; i++)
        {
            var c = conditions[i];
            var value = c.Accessor.Read(claims);
            if (value is null || !c.Condition.Matches(value))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Each condition of one rule against the claims, for explanations of rules the evaluation did not reach.</summary>
    public static IReadOnlyList<ConditionTrace> TraceRule(TrustRule rule, IJobClaims claims)
    {
        TraceConditions(rule, claims, out var traces);
        return traces;
    }

    private static bool TraceConditions(TrustRule rule, IJobClaims claims, out List<ConditionTrace> traces)
    {
        traces = new List<ConditionTrace>(rule.Conditions.Count);
        var all = true;
        foreach (var c in rule.Conditions)
        {
            var value = c.Accessor.Read(claims);
            var held = value is not null && c.Condition.Matches(value);
            all &= held;
            traces.Add(new ConditionTrace(c.Claim, c.Accessor.Source, c.Condition.Describe(), value, held));
        }

        return all;
    }

    private static bool GrantsAudiences(TrustRule rule, IReadOnlyList<string> requested)
    {
        for (var i = 0; i < requested.Count; i++)
        {
            if (!Contains(rule.Grant.Audiences, requested[i]))
            {
                return false;
            }
        }

        return true;
    }

    private static bool Contains(IReadOnlyList<string> list, string value)
    {
        for (var i = 0; i < list.Count; i++)
        {
            if (string.Equals(list[i], value, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    private static PolicyDecision Decide(TrustRule rule, ProviderDescriptor provider, IJobClaims claims, PolicyRequest request, List<RuleTrace>? traces)
    {
        IReadOnlyList<string> audiences = request.Audiences;
        if (audiences.Count == 0)
        {
            if (rule.Grant.Audiences.Count != 1)
            {
                return new PolicyDecision
                {
                    Outcome = PolicyOutcome.AudienceRequired,
                    Rule = rule,
                    Detail = $"rule '{rule.Id}' grants {rule.Grant.Audiences.Count} audiences; the request must name the ones it needs",
                    Trace = traces,
                };
            }

            audiences = rule.Grant.Audiences;
        }
        else
        {
            audiences = audiences.Distinct(StringComparer.Ordinal).ToArray();
        }

        IReadOnlyList<string> scopes;
        if (request.Scopes is null)
        {
            scopes = rule.Grant.Scopes;
        }
        else
        {
            foreach (var scope in request.Scopes)
            {
                if (!Contains(rule.Grant.Scopes, scope))
                {
                    return new PolicyDecision
                    {
                        Outcome = PolicyOutcome.ScopeNotGranted,
                        Rule = rule,
                        Detail = $"rule '{rule.Id}' does not grant scope '{scope}' (grants: [{string.Join(", ", rule.Grant.Scopes)}])",
                        Trace = traces,
                    };
                }
            }

            scopes = request.Scopes.Distinct(StringComparer.Ordinal).ToArray();
        }

        var context = new TemplateContext(provider.Name, rule.Id, rule.Grant.Stage);
        if (!rule.Grant.Subject.TryRender(claims, context, out var subject, out var missing))
        {
            return MissingClaim(rule, "subject", missing!, traces);
        }

        var rendered = new List<KeyValuePair<string, ClaimValue>>(rule.Grant.Claims.Count);
        foreach (var (name, template) in rule.Grant.Claims)
        {
            var value = Render(template, claims, context, out missing);
            if (value is null)
            {
                return MissingClaim(rule, $"claim '{name}'", missing!, traces);
            }

            rendered.Add(new(name, value));
        }

        return new PolicyDecision
        {
            Outcome = PolicyOutcome.Granted,
            Rule = rule,
            Audiences = audiences,
            Scopes = scopes,
            Subject = subject,
            Claims = rendered,
            Trace = traces,
        };
    }

    private static PolicyDecision MissingClaim(TrustRule rule, string what, string claim, List<RuleTrace>? traces) => new()
    {
        Outcome = PolicyOutcome.TemplateClaimMissing,
        Rule = rule,
        Detail = $"rule '{rule.Id}' matched but its {what} reads '{{{claim}}}', which the token does not carry",
        Trace = traces,
    };

    private static ClaimValue? Render(ClaimValueTemplate template, IJobClaims claims, TemplateContext context, out string? missing)
    {
        missing = null;
        switch (template)
        {
            case ClaimValueTemplate.Text t:
                return t.Template.TryRender(claims, context, out var s, out missing) ? new ClaimValue.Text(s) : null;
            case ClaimValueTemplate.List l:
                var items = new List<ClaimValue>(l.Items.Count);
                foreach (var item in l.Items)
                {
                    var v = Render(item, claims, context, out missing);
                    if (v is null)
                    {
                        return null;
                    }

                    items.Add(v);
                }

                return new ClaimValue.List(items);
            case ClaimValueTemplate.Map m:
                var entries = new List<KeyValuePair<string, ClaimValue>>(m.Entries.Count);
                foreach (var (k, item) in m.Entries)
                {
                    var v = Render(item, claims, context, out missing);
                    if (v is null)
                    {
                        return null;
                    }

                    entries.Add(new(k, v));
                }

                return new ClaimValue.Map(entries);
            default:
                throw new InvalidOperationException("unknown claim template");
        }
    }
}
