using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;

namespace TokenBroker.Hosting;

/// <summary>
/// The application log format: exactly one line per entry, <c>time level: category[event id] message</c>, with the
/// exception (when any) on the same line. Messages can carry request-influenced text (an issuer, a claim value, an
/// exception message that quotes input); the stock console formatters print it raw, so a CR/LF or an ANSI escape
/// sequence could forge log lines or repaint a terminal. Here every control character (C0, DEL, C1) and U+2028/U+2029
/// is written as <c>\uXXXX</c>.
/// </summary>
internal sealed class SafeConsoleFormatter(TimeProvider time) : ConsoleFormatter(FormatterName)
{
    public const string FormatterName = "tokenbroker";

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var message = logEntry.Formatter(logEntry.State, logEntry.Exception);
        if (string.IsNullOrEmpty(message) && logEntry.Exception is null)
        {
            return;
        }

        var line = new StringBuilder(128 + message.Length);
        line.Append(time.GetUtcNow().ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture));
        line.Append(' ').Append(Level(logEntry.LogLevel)).Append(": ");
        AppendEscaped(line, logEntry.Category);
        line.Append('[').Append(logEntry.EventId.Id.ToString(CultureInfo.InvariantCulture)).Append("] ");
        AppendEscaped(line, message);
        if (logEntry.Exception is { } exception)
        {
            line.Append(" exception: ");
            AppendEscaped(line, exception.ToString());
        }

        line.Append('\n');
        textWriter.Write(line.ToString());
    }

    /// <summary>The text with control characters and line/paragraph separators escaped (for any single-line log).</summary>
    public static string Escape(string text)
    {
        if (!NeedsEscaping(text))
        {
            return text;
        }

        var builder = new StringBuilder(text.Length + 16);
        AppendEscaped(builder, text);
        return builder.ToString();
    }

    private static bool NeedsEscaping(string text)
    {
        foreach (var c in text)
        {
            if (IsUnsafe(c))
            {
                return true;
            }
        }

        return false;
    }

    private static void AppendEscaped(StringBuilder builder, string text)
    {
        foreach (var c in text)
        {
            if (IsUnsafe(c))
            {
                builder.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            }
            else
            {
                builder.Append(c);
            }
        }
    }

    private static bool IsUnsafe(char c) => c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == '\u2028' || c == '\u2029';

    private static string Level(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        LogLevel.Critical => "crit",
        _ => "none",
    };
}
