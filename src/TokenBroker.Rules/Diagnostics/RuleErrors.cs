namespace TokenBroker.Rules.Diagnostics;

/// <summary>
/// The catalogue of rule-file diagnostics. Ids are stable: documentation, CLI output and tests refer to them.
/// </summary>
public static class RuleErrors
{
    public const string YamlSyntax = "TB2001";
    public const string UnknownKey = "TB2002";
    public const string WrongType = "TB2003";
    public const string MissingKey = "TB2004";
    public const string DuplicateRuleId = "TB2005";
    public const string InvalidRuleId = "TB2006";
    public const string UnknownProvider = "TB2007";
    public const string UnknownClaim = "TB2008";
    public const string InvalidCondition = "TB2009";
    public const string InvalidRegex = "TB2010";
    public const string InvalidGlob = "TB2011";
    public const string InvalidDuration = "TB2012";
    public const string TtlAboveMaximum = "TB2013";
    public const string InvalidTemplate = "TB2014";
    public const string ReservedClaim = "TB2015";
    public const string SharedIssuerWithoutOwnerPin = "TB2016";
    public const string PullRequestToPrivilegedStage = "TB2017";
    public const string InvalidAudience = "TB2018";
    public const string InvalidScope = "TB2019";
    public const string AliasNotAllowed = "TB2020";
    public const string DuplicateKey = "TB2021";
    public const string FileUnreadable = "TB2022";
    public const string NoRules = "TB2023";
    public const string InvalidStage = "TB2024";
    public const string TooLarge = "TB2025";

    // TB21xx: lint findings about compiled rules (see RuleLinter).
    public const string NameWithoutId = "TB2101";
    public const string PatternOnIdentityClaim = "TB2102";
    public const string PullRequestOptIn = "TB2103";
    public const string PullRequestCloudAudience = "TB2104";
    public const string Overlap = "TB2105";
    public const string Shadowed = "TB2106";
    public const string CloudAudience = "TB2107";
}
