using static TokenBroker.Errors.OAuthErrorCodes;

namespace TokenBroker.Errors;

/// <summary>
/// The one catalogue of exchange refusals. Ids are stable (TB1xxx exchange, TB2xxx rules): responses, the audit
/// log, docs/errors.md and tests all use them. Descriptions are deliberately short and generic; the audit log
/// carries the operator-facing detail.
/// </summary>
public static class BrokerErrors
{
    private const int BadRequest = StatusCodes.Status400BadRequest;

    // TB10xx: the HTTP request itself.
    public static readonly BrokerError MethodNotAllowed = new("TB1001", InvalidRequest, StatusCodes.Status405MethodNotAllowed, "The token endpoint accepts POST only.");
    public static readonly BrokerError NotFormEncoded = new("TB1002", InvalidRequest, StatusCodes.Status415UnsupportedMediaType, "The body must be application/x-www-form-urlencoded.");
    public static readonly BrokerError QueryParameters = new("TB1003", InvalidRequest, BadRequest, "Parameters must be sent in the body, not the query string.");
    public static readonly BrokerError BodyTooLarge = new("TB1004", InvalidRequest, StatusCodes.Status413PayloadTooLarge, "The request body is too large.");
    public static readonly BrokerError RepeatedParameter = new("TB1005", InvalidRequest, BadRequest, "A single-valued parameter was sent more than once.");
    public static readonly BrokerError MissingParameter = new("TB1006", InvalidRequest, BadRequest, "A required parameter is missing.");
    public static readonly BrokerError UnsupportedGrantType = new("TB1007", OAuthErrorCodes.UnsupportedGrantType, BadRequest, "Only the token-exchange grant is supported.");
    public static readonly BrokerError UnsupportedSubjectTokenType = new("TB1008", InvalidRequest, BadRequest, "This subject_token_type is not accepted.");
    public static readonly BrokerError UnsupportedRequestedTokenType = new("TB1009", InvalidRequest, BadRequest, "This requested_token_type cannot be issued.");
    public static readonly BrokerError ActorTokenNotAccepted = new("TB1010", InvalidRequest, BadRequest, "Delegation with actor_token is not supported.");
    public static readonly BrokerError InvalidRequestedLifetime = new("TB1011", InvalidRequest, BadRequest, "requested_lifetime must be a positive number of seconds.");
    public static readonly BrokerError FormLimits = new("TB1012", InvalidRequest, BadRequest, "The form has too many fields or a value that is too long.");
    public static readonly BrokerError MalformedForm = new("TB1013", InvalidRequest, BadRequest, "The form body could not be parsed.");
    public static readonly BrokerError InvalidAudienceParameter = new("TB1014", InvalidTarget, BadRequest, "An audience or resource value is malformed.");
    public static readonly BrokerError InvalidScopeParameter = new("TB1015", InvalidScope, BadRequest, "The scope parameter is malformed.");
    public static readonly BrokerError OwnTokenNotExchangeable = new("TB1016", InvalidRequest, BadRequest, "Only access tokens issued by this broker can be exchanged as access_token.");

    // TB11xx: the subject token.
    public static readonly BrokerError TokenTooLarge = new("TB1101", InvalidRequest, BadRequest, "The subject token is too large.");
    public static readonly BrokerError TokenMalformed = new("TB1102", InvalidRequest, BadRequest, "The subject token is not a well-formed signed JWT.");
    public static readonly BrokerError TokenEncrypted = new("TB1103", InvalidRequest, BadRequest, "Encrypted tokens (JWE) are not accepted.");
    public static readonly BrokerError TokenAlgorithm = new("TB1104", InvalidRequest, BadRequest, "The subject token's signing algorithm is not allowed.");
    public static readonly BrokerError TokenHeaderForbidden = new("TB1105", InvalidRequest, BadRequest, "The subject token carries a header the broker refuses (jku, x5u, jwk, x5c).");
    public static readonly BrokerError TokenCrit = new("TB1106", InvalidRequest, BadRequest, "The subject token has critical header extensions the broker does not understand.");
    public static readonly BrokerError UnknownIssuer = new("TB1107", InvalidRequest, BadRequest, "The subject token's issuer is not trusted.");
    public static readonly BrokerError MissingKeyId = new("TB1108", InvalidRequest, BadRequest, "The subject token has no key id (kid).");
    public static readonly BrokerError UnknownKey = new("TB1109", InvalidRequest, BadRequest, "The subject token is signed with a key its issuer does not publish.");
    public static readonly BrokerError BadSignature = new("TB1110", InvalidRequest, BadRequest, "The subject token's signature is invalid.");
    public static readonly BrokerError WrongAudience = new("TB1111", InvalidRequest, BadRequest, "The subject token's audience is not this broker's.");
    public static readonly BrokerError Expired = new("TB1112", InvalidRequest, BadRequest, "The subject token has expired.");
    public static readonly BrokerError NotYetValid = new("TB1113", InvalidRequest, BadRequest, "The subject token is not valid yet.");
    public static readonly BrokerError IssuedInFuture = new("TB1114", InvalidRequest, BadRequest, "The subject token's issue time is in the future.");
    public static readonly BrokerError LifetimeTooLong = new("TB1115", InvalidRequest, BadRequest, "The subject token's lifetime exceeds what its provider allows.");
    public static readonly BrokerError MissingClaim = new("TB1116", InvalidRequest, BadRequest, "The subject token lacks a required claim.");
    public static readonly BrokerError ClaimType = new("TB1117", InvalidRequest, BadRequest, "A registered claim of the subject token has the wrong type.");
    public static readonly BrokerError Replayed = new("TB1118", InvalidRequest, BadRequest, "This subject token has already been exchanged.");
    public static readonly BrokerError TokenLimits = new("TB1119", InvalidRequest, BadRequest, "The subject token exceeds the claim count or nesting limits.");

    // TB12xx: policy.
    public static readonly BrokerError NoRuleMatched = new("TB1201", InvalidRequest, BadRequest, "No trust rule allows this token.");
    public static readonly BrokerError AudienceNotGranted = new("TB1202", InvalidTarget, BadRequest, "The requested audience is not granted to this token.");
    public static readonly BrokerError AudienceRequired = new("TB1203", InvalidTarget, BadRequest, "The request must name an audience.");
    public static readonly BrokerError ScopeNotGranted = new("TB1204", InvalidScope, BadRequest, "The requested scope is not granted to this token.");
    public static readonly BrokerError RuleNotApplicable = new("TB1205", InvalidRequest, BadRequest, "The matching rule needs a claim this token does not carry.");
    public static readonly BrokerError Blocked = new("TB1206", InvalidRequest, BadRequest, "Exchanges for this token are blocked by an operator.");
    public static readonly BrokerError DownscopeNotAllowed = new("TB1207", InvalidTarget, BadRequest, "This token cannot be downscoped to the requested audience.");
    public static readonly BrokerError BrokerTokenInactive = new("TB1208", InvalidRequest, BadRequest, "The presented broker token is expired, revoked or unknown.");
    public static readonly BrokerError DownscopeWidens = new("TB1209", InvalidScope, BadRequest, "A downscoped token cannot carry scopes the presented token lacks.");

    public static readonly BrokerError AlgorithmConflict = new("TB1210", InvalidTarget, BadRequest, "The requested audiences need different signing algorithms; request them in separate exchanges.");

    // TB13xx: infrastructure. Never a token; always Retry-After.
    public static readonly BrokerError ProviderUnavailable = new("TB1301", TemporarilyUnavailable, StatusCodes.Status503ServiceUnavailable, "The token's issuer keys cannot be fetched right now; retry shortly.");
    public static readonly BrokerError StateUnavailable = new("TB1302", TemporarilyUnavailable, StatusCodes.Status503ServiceUnavailable, "The broker's state store is unavailable; retry shortly.");
    public static readonly BrokerError SigningUnavailable = new("TB1303", TemporarilyUnavailable, StatusCodes.Status503ServiceUnavailable, "The broker cannot sign tokens right now; retry shortly.");
    public static readonly BrokerError RulesUnavailable = new("TB1304", TemporarilyUnavailable, StatusCodes.Status503ServiceUnavailable, "No trust rules are loaded; retry shortly.");

    // TB14xx: revocation, introspection and the admin API.
    public static readonly BrokerError Unauthenticated = new("TB1401", InvalidClient, StatusCodes.Status401Unauthorized, "Authentication is required.");
    public static readonly BrokerError AdminBodyInvalid = new("TB1402", InvalidRequest, BadRequest, "The body must be a JSON object of the documented shape.");
    public static readonly BrokerError AdminSelectorInvalid = new("TB1403", InvalidRequest, BadRequest, "The block selector is invalid.");
    public static readonly BrokerError AdminNotFound = new("TB1404", InvalidRequest, StatusCodes.Status404NotFound, "No such item.");
    public static readonly BrokerError AdminBodyTooLarge = new("TB1405", InvalidRequest, StatusCodes.Status413PayloadTooLarge, "The request body is too large.");
    public static readonly BrokerError AdminNotJson = new("TB1406", InvalidRequest, StatusCodes.Status415UnsupportedMediaType, "The body must be application/json.");
    public static readonly BrokerError TokenParameterMissing = new("TB1407", InvalidRequest, BadRequest, "The token parameter is missing or too large.");
    public static readonly BrokerError KeyRotationNoCandidate = new("TB1408", InvalidRequest, StatusCodes.Status409Conflict, "No standby key is available for this rotation.");
    public static readonly BrokerError KeyRotationPending = new("TB1409", InvalidRequest, StatusCodes.Status409Conflict, "A key rotation of this algorithm is already pending.");

    // TB15xx: rate limits. 429 with Retry-After; temporarily_unavailable because RFC 6749 has no throttling code and
    // this is the one its clients read as "retry later" (docs/operations.md explains the choice).
    public static readonly BrokerError ClientRateLimited = new("TB1501", TemporarilyUnavailable, StatusCodes.Status429TooManyRequests, "Too many requests from this client; retry after the time in Retry-After.");
    public static readonly BrokerError RepositoryRateLimited = new("TB1502", TemporarilyUnavailable, StatusCodes.Status429TooManyRequests, "Too many exchanges for this repository; retry after the time in Retry-After.");

    public static readonly BrokerError Internal = new("TB1900", ServerError, StatusCodes.Status500InternalServerError, "Internal error.");

    /// <summary>The refusal for a policy outcome other than granted: the exchange and <c>rules explain</c>/<c>test</c> share it.</summary>
    public static BrokerError ForPolicy(TokenBroker.Rules.Evaluation.PolicyOutcome outcome) => outcome switch
    {
        TokenBroker.Rules.Evaluation.PolicyOutcome.AudienceNotGranted => AudienceNotGranted,
        TokenBroker.Rules.Evaluation.PolicyOutcome.AudienceRequired => AudienceRequired,
        TokenBroker.Rules.Evaluation.PolicyOutcome.ScopeNotGranted => ScopeNotGranted,
        TokenBroker.Rules.Evaluation.PolicyOutcome.TemplateClaimMissing => RuleNotApplicable,
        TokenBroker.Rules.Evaluation.PolicyOutcome.NoRuleMatched => NoRuleMatched,
        _ => throw new ArgumentOutOfRangeException(nameof(outcome), outcome, "a granted decision is not a refusal"),
    };

    /// <summary>Every error in the catalogue, for docs and tests.</summary>
    public static IReadOnlyList<BrokerError> All { get; } = typeof(BrokerErrors)
        .GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
        .Where(f => f.FieldType == typeof(BrokerError))
        .Select(f => (BrokerError)f.GetValue(null)!)
        .ToArray();
}
