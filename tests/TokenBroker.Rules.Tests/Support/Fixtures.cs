using System.Text.Json;
using TokenBroker.Rules.Providers;

namespace TokenBroker.Rules.Tests.Support;

/// <summary>
/// The job-token claim fixtures under samples/fixtures. Strings are taken as they are, numbers and booleans as
/// their JSON text (as the broker's claim reader does); other values are not scalars and are left out.
/// </summary>
internal static class Fixtures
{
    private static readonly Lazy<IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>>> GitHubTokens = new(() => Load("github.json"));
    private static readonly Lazy<IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>>> GitLabTokens = new(() => Load("gitlab.json"));

    public static IReadOnlyList<string> GitHubNames => [.. GitHubTokens.Value.Keys];

    public static IReadOnlyList<string> GitLabNames => [.. GitLabTokens.Value.Keys];

    public static DictionaryJobClaims GitHub(string name) => new(GitHubValues(name));

    public static DictionaryJobClaims GitLab(string name) => new(GitLabValues(name));

    /// <summary>A copy of a GitHub fixture's claims, to change for one test.</summary>
    public static Dictionary<string, string> GitHubValues(string name) => new(GitHubTokens.Value[name], StringComparer.Ordinal);

    public static Dictionary<string, string> GitLabValues(string name) => new(GitLabTokens.Value[name], StringComparer.Ordinal);

    public static DictionaryJobClaims Claims(params (string Name, string Value)[] claims) =>
        new(claims.ToDictionary(c => c.Name, c => c.Value, StringComparer.Ordinal));

    private static Dictionary<string, IReadOnlyDictionary<string, string>> Load(string file)
    {
        var path = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", file);
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        var tokens = new Dictionary<string, IReadOnlyDictionary<string, string>>(StringComparer.Ordinal);
        foreach (var token in document.RootElement.EnumerateObject())
        {
            var claims = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var claim in token.Value.EnumerateObject())
            {
                switch (claim.Value.ValueKind)
                {
                    case JsonValueKind.String:
                        claims[claim.Name] = claim.Value.GetString()!;
                        break;
                    case JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False:
                        claims[claim.Name] = claim.Value.GetRawText();
                        break;
                }
            }

            tokens[token.Name] = claims;
        }

        return tokens;
    }
}
