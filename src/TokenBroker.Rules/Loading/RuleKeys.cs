namespace TokenBroker.Rules.Loading;

/// <summary>
/// The keys a rules file may use, shared by the compiler and the JSON Schema generator so that the two cannot
/// disagree about what is allowed.
/// </summary>
public static class RuleKeys
{
    public static readonly string[] File = ["rules", "version"];
    public static readonly string[] FileRequired = ["rules"];
    public static readonly string[] Rule = ["id", "description", "provider", "when", "grant", "allow_pull_requests"];
    public static readonly string[] RuleRequired = ["id", "provider", "when", "grant"];
    public static readonly string[] Grant = ["audiences", "scopes", "stage", "ttl", "subject", "claims", "downscope_audiences"];
    public static readonly string[] GrantRequired = ["audiences", "stage", "subject"];
    public static readonly string[] Operators = ["in", "glob", "regex", "not"];
}
