using System.Text.Json;
using System.Text.Json.Serialization;

namespace TokenBroker.Audit;

/// <summary>Writes audit events as single-line JSON through the logging pipeline (category <c>TokenBroker.Audit</c>).</summary>
internal sealed partial class LoggerAuditSink(ILoggerFactory loggers) : IAuditSink
{
    private readonly ILogger _logger = loggers.CreateLogger("TokenBroker.Audit");

    public void Write(AuditEvent auditEvent)
    {
        if (_logger.IsEnabled(LogLevel.Information))
        {
            Log.Audit(_logger, JsonSerializer.Serialize(auditEvent, AuditJsonContext.Default.AuditEvent));
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 9000, Level = LogLevel.Information, Message = "{AuditJson}")]
        public static partial void Audit(ILogger logger, string auditJson);
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(AuditEvent))]
internal sealed partial class AuditJsonContext : JsonSerializerContext;
