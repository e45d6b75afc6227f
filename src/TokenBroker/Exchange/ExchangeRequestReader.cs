using System.Globalization;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Net.Http.Headers;
using TokenBroker.Configuration;
using TokenBroker.Errors;

namespace TokenBroker.Exchange;

/// <summary>
/// Extracts an <see cref="ExchangeRequest"/> from HTTP: POST only, form body only, no query string, bounded body,
/// single-valued parameters sent once, unknown parameters ignored.
/// </summary>
internal sealed class ExchangeRequestReader(ResolvedSettings settings)
{
    private static readonly HashSet<string> SingleValued = new(StringComparer.Ordinal)
    {
        "grant_type", "subject_token", "subject_token_type", "requested_token_type", "scope", "actor_token",
        "actor_token_type", "requested_lifetime", "client_id",
    };

    private readonly LimitsOptions _limits = settings.Limits;

    public async Task<ReadResult> ReadAsync(HttpRequest http, CancellationToken cancel)
    {
        if (!HttpMethods.IsPost(http.Method))
        {
            return ReadResult.Fail(BrokerErrors.MethodNotAllowed, $"method {http.Method}");
        }

        if (http.QueryString.HasValue)
        {
            return ReadResult.Fail(BrokerErrors.QueryParameters, "request has a query string");
        }

        if (!MediaTypeHeaderValue.TryParse(http.ContentType, out var contentType) ||
            !contentType.MediaType.Equals("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase) ||
            (contentType.Charset.HasValue && !contentType.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase)))
        {
            return ReadResult.Fail(BrokerErrors.NotFormEncoded, $"content type '{http.ContentType}'");
        }

        var max = _limits.MaxRequestBodyBytes;
        if (http.ContentLength > max)
        {
            return ReadResult.Fail(BrokerErrors.BodyTooLarge, $"content length {http.ContentLength} exceeds {max}");
        }

        var sizeFeature = http.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (sizeFeature is { IsReadOnly: false })
        {
            sizeFeature.MaxRequestBodySize = max;
        }

        byte[] body;
        try
        {
            body = await ReadBoundedAsync(http.Body, max, cancel).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return ReadResult.Fail(BrokerErrors.BodyTooLarge, "body exceeds the limit");
        }

        if (body.Length > max)
        {
            return ReadResult.Fail(BrokerErrors.BodyTooLarge, $"body exceeds {max} bytes");
        }

        var fields = FormBody.Parse(body, _limits.MaxFormFields, out var tooMany);
        if (fields is null)
        {
            return tooMany
                ? ReadResult.Fail(BrokerErrors.FormLimits, $"more than {_limits.MaxFormFields} form fields")
                : ReadResult.Fail(BrokerErrors.MalformedForm, "body is not valid form encoding");
        }

        return Interpret(fields);
    }

    private static async Task<byte[]> ReadBoundedAsync(Stream body, int max, CancellationToken cancel)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int read;
        while ((read = await body.ReadAsync(chunk, cancel).ConfigureAwait(false)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > max)
            {
                break;
            }
        }

        return buffer.ToArray();
    }

    private ReadResult Interpret(List<KeyValuePair<string, string>> fields)
    {
        var single = new Dictionary<string, string>(StringComparer.Ordinal);
        var audiences = new List<string>();
        foreach (var (name, value) in fields)
        {
            if (name.Length > _limits.MaxParameterLength)
            {
                return ReadResult.Fail(BrokerErrors.FormLimits, $"a parameter name is {name.Length} characters; the limit is {_limits.MaxParameterLength}");
            }

            var isToken = name is "subject_token" or "actor_token";
            if (isToken ? value.Length > _limits.MaxTokenBytes : value.Length > _limits.MaxParameterLength)
            {
                return isToken
                    ? ReadResult.Fail(BrokerErrors.TokenTooLarge, $"{name} is {value.Length} characters; the limit is {_limits.MaxTokenBytes}")
                    : ReadResult.Fail(BrokerErrors.FormLimits, $"parameter '{Safe(name)}' is {value.Length} characters; the limit is {_limits.MaxParameterLength}");
            }

            if (name is "audience" or "resource")
            {
                if (!ValidTarget(name, value))
                {
                    return ReadResult.Fail(BrokerErrors.InvalidAudienceParameter, $"{name} value is empty, has spaces or control characters, or (resource) is not an absolute URI without fragment");
                }

                if (!audiences.Contains(value, StringComparer.Ordinal))
                {
                    audiences.Add(value);
                }

                if (audiences.Count > _limits.MaxAudiences)
                {
                    return ReadResult.Fail(BrokerErrors.FormLimits, $"more than {_limits.MaxAudiences} audience/resource values");
                }

                continue;
            }

            if (SingleValued.Contains(name) && !single.TryAdd(name, value))
            {
                return ReadResult.Fail(BrokerErrors.RepeatedParameter, $"parameter '{name}' sent more than once");
            }
        }

        if (!single.TryGetValue("grant_type", out var grantType))
        {
            return ReadResult.Fail(BrokerErrors.MissingParameter, "grant_type is missing");
        }

        if (grantType != TokenTypes.TokenExchangeGrant)
        {
            return ReadResult.Fail(BrokerErrors.UnsupportedGrantType, $"grant_type '{Safe(grantType)}'");
        }

        if (!single.TryGetValue("subject_token", out var subjectToken) || subjectToken.Length == 0)
        {
            return ReadResult.Fail(BrokerErrors.MissingParameter, "subject_token is missing");
        }

        if (!single.TryGetValue("subject_token_type", out var subjectTokenType))
        {
            return ReadResult.Fail(BrokerErrors.MissingParameter, "subject_token_type is missing");
        }

        // access_token: only tokens this broker issued, for downscoping (checked by BrokerTokenValidator).
        if (subjectTokenType is not (TokenTypes.Jwt or TokenTypes.IdToken or TokenTypes.AccessToken))
        {
            return ReadResult.Fail(BrokerErrors.UnsupportedSubjectTokenType, $"subject_token_type '{Safe(subjectTokenType)}'");
        }

        var requested = single.GetValueOrDefault("requested_token_type") ?? TokenTypes.AccessToken;
        if (requested is not (TokenTypes.AccessToken or TokenTypes.Jwt))
        {
            return ReadResult.Fail(BrokerErrors.UnsupportedRequestedTokenType, $"requested_token_type '{Safe(requested)}'");
        }

        var hasActor = single.ContainsKey("actor_token");
        if (hasActor || single.ContainsKey("actor_token_type"))
        {
            return ReadResult.Fail(
                hasActor != single.ContainsKey("actor_token_type") ? BrokerErrors.MissingParameter : BrokerErrors.ActorTokenNotAccepted,
                hasActor ? "actor_token sent; delegation is not supported" : "actor_token_type without actor_token");
        }

        IReadOnlyList<string>? scopes = null;
        if (single.TryGetValue("scope", out var scope))
        {
            var parts = scope.Split(' ');
            if (parts.Any(p => p.Length == 0 || p.Any(c => c < 0x21 || c > 0x7E || c == '"' || c == '\\')))
            {
                return ReadResult.Fail(BrokerErrors.InvalidScopeParameter, "scope is not a space-separated list of scope tokens");
            }

            scopes = parts.Distinct(StringComparer.Ordinal).ToArray();
        }

        TimeSpan? lifetime = null;
        if (single.TryGetValue("requested_lifetime", out var lifetimeText))
        {
            if (!int.TryParse(lifetimeText, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || seconds <= 0)
            {
                return ReadResult.Fail(BrokerErrors.InvalidRequestedLifetime, "requested_lifetime is not a positive integer");
            }

            lifetime = TimeSpan.FromSeconds(seconds);
        }

        return ReadResult.Success(new ExchangeRequest
        {
            SubjectToken = subjectToken,
            SubjectTokenType = subjectTokenType,
            RequestedTokenType = requested,
            Audiences = audiences,
            Scopes = scopes,
            RequestedLifetime = lifetime,
        });
    }

    private static bool ValidTarget(string name, string value)
    {
        if (value.Length == 0 || value.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
        {
            return false;
        }

        return name == "audience" || (Uri.TryCreate(value, UriKind.Absolute, out var uri) && string.IsNullOrEmpty(uri.Fragment));
    }

    private static string Safe(string value) => Tokens.JwtReader.Printable(value);
}

internal readonly record struct ReadResult(ExchangeRequest? Request, BrokerError? Error, string? Detail)
{
    public static ReadResult Success(ExchangeRequest request) => new(request, null, null);

    public static ReadResult Fail(BrokerError error, string detail) => new(null, error, detail);
}
