using System.Buffers;
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
    /// <summary>The parameters that may be sent at most once (indexes below name the ones read).</summary>
    private static readonly string[] SingleValued =
    [
        "grant_type", "subject_token", "subject_token_type", "requested_token_type", "scope", "actor_token",
        "actor_token_type", "requested_lifetime", "client_id",
    ];

    private const int GrantType = 0;
    private const int SubjectToken = 1;
    private const int SubjectTokenType = 2;
    private const int RequestedTokenType = 3;
    private const int Scope = 4;
    private const int ActorToken = 5;
    private const int ActorTokenType = 6;
    private const int RequestedLifetime = 7;

    /// <summary>The characters of a scope token (RFC 6749 section 3.3): printable ASCII except space, '"' and '\'.</summary>
    private static readonly SearchValues<char> ScopeCharacters = SearchValues.Create(
        "!#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~");

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
        int length;
        try
        {
            (body, length) = await ReadBoundedAsync(http.Body, max, http.ContentLength, cancel).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return ReadResult.Fail(BrokerErrors.BodyTooLarge, "body exceeds the limit");
        }

        try
        {
            if (length > max)
            {
                return ReadResult.Fail(BrokerErrors.BodyTooLarge, $"body exceeds {max} bytes");
            }

            var fields = FormBody.Parse(body.AsSpan(0, length), _limits.MaxFormFields, out var tooMany);
            if (fields is null)
            {
                return tooMany
                    ? ReadResult.Fail(BrokerErrors.FormLimits, $"more than {_limits.MaxFormFields} form fields")
                    : ReadResult.Fail(BrokerErrors.MalformedForm, "body is not valid form encoding");
            }

            return Interpret(fields, _limits);
        }
        finally
        {
            // The body holds the job token: clear it before the buffer goes back to the pool.
            ArrayPool<byte>.Shared.Return(body, clearArray: true);
        }
    }

    /// <summary>
    /// Reads the body into a pooled buffer (the caller returns it), stopping once more than <paramref name="max"/>
    /// bytes have arrived. Sized from Content-Length when there is one, so a normal request is read without copying.
    /// </summary>
    private static async Task<(byte[] Buffer, int Length)> ReadBoundedAsync(Stream body, int max, long? contentLength, CancellationToken cancel)
    {
        // One byte more than the limit, so that a body over the limit is seen as such.
        var capacity = max + 1;
        var buffer = ArrayPool<byte>.Shared.Rent(contentLength is { } declared ? (int)Math.Min(declared + 1, capacity) : Math.Min(4096, capacity));
        var length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (length >= capacity)
                    {
                        break;
                    }

                    var larger = ArrayPool<byte>.Shared.Rent((int)Math.Min(buffer.Length * 2L, capacity));
                    buffer.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
                    buffer = larger;
                }

                var read = await body.ReadAsync(buffer.AsMemory(length, Math.Min(buffer.Length, capacity) - length), cancel).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                length += read;
                if (length > max)
                {
                    break;
                }
            }

            return (buffer, length);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
            throw;
        }
    }

    /// <summary>The request in parsed form fields, checked against <paramref name="limits"/>.</summary>
    internal static ReadResult Interpret(List<KeyValuePair<string, string>> fields, LimitsOptions limits)
    {
        // The single-valued parameters by SingleValued index; null until sent.
        Span<string?> single = new string?[SingleValued.Length];
        var audiences = new List<string>(1);
        foreach (var (name, value) in fields)
        {
            if (name.Length > limits.MaxParameterLength)
            {
                return ReadResult.Fail(BrokerErrors.FormLimits, $"a parameter name is {name.Length} characters; the limit is {limits.MaxParameterLength}");
            }

            var isToken = name is "subject_token" or "actor_token";
            if (isToken ? value.Length > limits.MaxTokenBytes : value.Length > limits.MaxParameterLength)
            {
                return isToken
                    ? ReadResult.Fail(BrokerErrors.TokenTooLarge, $"{name} is {value.Length} characters; the limit is {limits.MaxTokenBytes}")
                    : ReadResult.Fail(BrokerErrors.FormLimits, $"parameter '{Safe(name)}' is {value.Length} characters; the limit is {limits.MaxParameterLength}");
            }

            if (name is "audience" or "resource")
            {
                if (!ValidTarget(name, value))
                {
                    return ReadResult.Fail(BrokerErrors.InvalidAudienceParameter, $"{name} value is empty, has spaces or control characters, or (resource) is not an absolute URI without fragment");
                }

                if (!audiences.Contains(value))
                {
                    audiences.Add(value);
                }

                if (audiences.Count > limits.MaxAudiences)
                {
                    return ReadResult.Fail(BrokerErrors.FormLimits, $"more than {limits.MaxAudiences} audience/resource values");
                }

                continue;
            }

            var index = Array.IndexOf(SingleValued, name);
            if (index >= 0)
            {
                if (single[index] is not null)
                {
                    return ReadResult.Fail(BrokerErrors.RepeatedParameter, $"parameter '{name}' sent more than once");
                }

                single[index] = value;
            }
        }

        if (single[GrantType] is not { } grantType)
        {
            return ReadResult.Fail(BrokerErrors.MissingParameter, "grant_type is missing");
        }

        if (grantType != TokenTypes.TokenExchangeGrant)
        {
            return ReadResult.Fail(BrokerErrors.UnsupportedGrantType, $"grant_type '{Safe(grantType)}'");
        }

        if (single[SubjectToken] is not { Length: > 0 } subjectToken)
        {
            return ReadResult.Fail(BrokerErrors.MissingParameter, "subject_token is missing");
        }

        if (single[SubjectTokenType] is not { } subjectTokenType)
        {
            return ReadResult.Fail(BrokerErrors.MissingParameter, "subject_token_type is missing");
        }

        // access_token: only tokens this broker issued, for downscoping (checked by BrokerTokenValidator).
        if (subjectTokenType is not (TokenTypes.Jwt or TokenTypes.IdToken or TokenTypes.AccessToken))
        {
            return ReadResult.Fail(BrokerErrors.UnsupportedSubjectTokenType, $"subject_token_type '{Safe(subjectTokenType)}'");
        }

        var requested = single[RequestedTokenType] ?? TokenTypes.AccessToken;
        if (requested is not (TokenTypes.AccessToken or TokenTypes.Jwt))
        {
            return ReadResult.Fail(BrokerErrors.UnsupportedRequestedTokenType, $"requested_token_type '{Safe(requested)}'");
        }

        var hasActor = single[ActorToken] is not null;
        var hasActorType = single[ActorTokenType] is not null;
        if (hasActor || hasActorType)
        {
            return ReadResult.Fail(
                hasActor != hasActorType ? BrokerErrors.MissingParameter : BrokerErrors.ActorTokenNotAccepted,
                hasActor ? "actor_token sent; delegation is not supported" : "actor_token_type without actor_token");
        }

        IReadOnlyList<string>? scopes = null;
        if (single[Scope] is { } scope)
        {
            scopes = ScopeTokens(scope);
            if (scopes is null)
            {
                return ReadResult.Fail(BrokerErrors.InvalidScopeParameter, "scope is not a space-separated list of scope tokens");
            }
        }

        TimeSpan? lifetime = null;
        if (single[RequestedLifetime] is { } lifetimeText)
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

    /// <summary>
    /// The distinct scope tokens of a space-separated list, in first-seen order; null when a token is empty or
    /// has a character outside %x21 / %x23-5B / %x5D-7E (RFC 6749 section 3.3).
    /// </summary>
    private static string[]? ScopeTokens(string scope)
    {
        var parts = scope.Split(' ');
        foreach (var part in parts)
        {
            if (part.Length == 0 || part.AsSpan().ContainsAnyExcept(ScopeCharacters))
            {
                return null;
            }
        }

        if (parts.Length == 1)
        {
            return parts;
        }

        var distinct = new List<string>(parts.Length);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var part in parts)
        {
            if (seen.Add(part))
            {
                distinct.Add(part);
            }
        }

        return distinct.Count == parts.Length ? parts : [.. distinct];
    }

    private static bool ValidTarget(string name, string value)
    {
        if (value.Length == 0)
        {
            return false;
        }

        foreach (var c in value)
        {
            if (char.IsWhiteSpace(c) || char.IsControl(c))
            {
                return false;
            }
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
