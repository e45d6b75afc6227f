using System.Buffers;
using System.Diagnostics;
using System.Text.Json;
using TokenBroker.Audit;
using TokenBroker.Configuration;
using TokenBroker.Errors;
using TokenBroker.Hosting;
using TokenBroker.RateLimiting;

namespace TokenBroker.Exchange;

/// <summary>The RFC 8693 token endpoint: extract the request, handle the exchange, apply the response.</summary>
internal static partial class TokenEndpoints
{
    public static void MapTokenEndpoint(this IEndpointRouteBuilder app)
    {
        // A plain RequestDelegate over services resolved once (on the first request, as the container would): the
        // delegate ASP.NET Core generates for a handler with service parameters resolves each of them per request.
        var root = app.ServiceProvider;
        Services? services = null;
        app.Map("/token", http =>
        {
            var s = services ??= new Services(
                root.GetRequiredService<ExchangeRequestReader>(),
                root.GetRequiredService<ExchangeHandler>(),
                root.GetRequiredService<IAuditSink>(),
                root.GetRequiredService<ResolvedSettings>(),
                root.GetRequiredService<TimeProvider>(),
                root.GetRequiredService<ILogger<ExchangeHandler>>());
            return HandleAsync(http, s.Reader, s.Handler, s.AuditSink, s.Settings, s.Time, s.Logger);
        }).WithName("token").DisableAntiforgery().LimitPerClient("Token", "exchange");
    }

    private sealed record Services(
        ExchangeRequestReader Reader, ExchangeHandler Handler, IAuditSink AuditSink, ResolvedSettings Settings, TimeProvider Time, ILogger<ExchangeHandler> Logger);

    private static async Task HandleAsync(
        HttpContext http,
        ExchangeRequestReader reader,
        ExchangeHandler handler,
        IAuditSink auditSink,
        ResolvedSettings settings,
        TimeProvider time,
        ILogger<ExchangeHandler> logger)
    {
        var started = time.GetTimestamp();
        using var activity = BrokerTracing.Source.StartActivity("exchange");
        var audit = new AuditEvent
        {
            Type = "exchange",
            RequestId = http.TraceIdentifier,
            Time = time.GetUtcNow(),
            ClientIp = http.Connection.RemoteIpAddress?.ToString(),
        };
        try
        {
            var read = await reader.ReadAsync(http.Request, http.RequestAborted).ConfigureAwait(false);
            ExchangeOutcome outcome;
            if (read.Request is null)
            {
                audit.Outcome = "refused";
                audit.ErrorId = read.Error!.Id;
                audit.ErrorCode = read.Error.Code;
                audit.Detail = read.Detail;
                outcome = ExchangeOutcome.Fail(read.Error);
            }
            else
            {
                outcome = await handler.ExchangeAsync(read.Request, audit, http.RequestAborted).ConfigureAwait(false);
            }

            if (outcome.Token is { } token)
            {
                await WriteSuccessAsync(http, token).ConfigureAwait(false);
            }
            else
            {
                await WriteErrorAsync(http, outcome.Error!, outcome.RetryAfterSeconds ?? settings.Exchange.RetryAfterSeconds).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            audit.Outcome = "aborted";
            audit.Detail = "client went away";
        }
        catch (Exception e)
        {
            // Never a stack trace or token content to the caller; the operator gets the exception in the log.
            Log.ExchangeFailed(logger, e, http.TraceIdentifier);
            audit.Outcome = "error";
            audit.ErrorId = BrokerErrors.Internal.Id;
            audit.ErrorCode = BrokerErrors.Internal.Code;
            audit.Detail = e.GetType().Name;
            if (!http.Response.HasStarted)
            {
                await WriteErrorAsync(http, BrokerErrors.Internal, settings.Exchange.RetryAfterSeconds).ConfigureAwait(false);
            }
        }
        finally
        {
            audit.LatencyMs = Math.Round(time.GetElapsedTime(started).TotalMilliseconds, 3);
            BrokerTracing.Complete(activity, audit);
            auditSink.Write(audit);
        }
    }

    private static Task WriteSuccessAsync(HttpContext http, IssuedToken token)
    {
        NoStore(http.Response);
        http.Response.StatusCode = StatusCodes.Status200OK;
        http.Response.ContentType = "application/json";
        var body = JsonResponseBuffer.Rent();
        try
        {
            WriteSuccessBody(body.Writer, token);
            Send(http.Response, body);
        }
        finally
        {
            body.Return();
        }

        return Task.CompletedTask;
    }

    /// <summary>The RFC 8693 section 2.2.1 response body.</summary>
    internal static void WriteSuccessBody(Utf8JsonWriter w, IssuedToken token)
    {
        w.WriteStartObject();
        w.WriteString("access_token"u8, token.AccessToken);
        w.WriteString("issued_token_type"u8, token.IssuedTokenType);
        w.WriteString("token_type"u8, token.TokenType);
        w.WriteNumber("expires_in"u8, token.ExpiresIn);
        if (token.Scope is not null)
        {
            w.WriteString("scope"u8, token.Scope);
        }

        w.WriteEndObject();
    }

    /// <summary>Writes an RFC 6749 section 5.2 error with the stable id and request id.</summary>
    internal static Task WriteErrorAsync(HttpContext http, BrokerError error, int retryAfterSeconds)
    {
        NoStore(http.Response);
        http.Response.StatusCode = error.Status;
        http.Response.ContentType = "application/json";
        if (error.IsTransient)
        {
            http.Response.Headers.RetryAfter = retryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        if (error == BrokerErrors.MethodNotAllowed)
        {
            http.Response.Headers.Allow = "POST";
        }

        var body = JsonResponseBuffer.Rent();
        try
        {
            var w = body.Writer;
            w.WriteStartObject();
            w.WriteString("error"u8, error.Code);
            w.WriteString("error_description"u8, $"{error.Description} ({error.Id}, request {http.TraceIdentifier})");
            w.WriteString("error_id"u8, error.Id);
            w.WriteString("request_id"u8, http.TraceIdentifier);
            w.WriteEndObject();
            Send(http.Response, body);
        }
        finally
        {
            body.Return();
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Sets <c>Content-Length</c> and copies the whole body into the response pipe without flushing it: the server
    /// sends it when the request ends, which is after <c>HandleAsync</c>'s <c>finally</c> has handed the audit event
    /// to the sink, so no client sees an answer before it is audited (as when the last chunk went out at the end).
    /// </summary>
    private static void Send(HttpResponse response, JsonResponseBuffer body)
    {
        var bytes = body.Written.Span;
        response.ContentLength = bytes.Length;
        response.BodyWriter.Write(bytes);
    }

    internal static void NoStore(HttpResponse response)
    {
        response.Headers.CacheControl = "no-store";
        response.Headers.Pragma = "no-cache";
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1900, Level = LogLevel.Error, Message = "Exchange {RequestId} failed unexpectedly")]
        public static partial void ExchangeFailed(ILogger logger, Exception exception, string requestId);
    }
}
