using System.Buffers;
using System.Text.Json;

namespace TokenBroker.Exchange;

/// <summary>
/// A JSON writer over a reusable buffer, one cached per thread, for small JSON responses: the body is serialised
/// in memory and handed to the response in one piece with a <c>Content-Length</c> (no chunked encoding, no writer
/// over the response stream per request). Rent, write with <see cref="Writer"/>, send <see cref="Written"/>, then
/// <see cref="Return"/> (from any thread). The written bytes (tokens, in a success response) are cleared on return.
/// </summary>
internal sealed class JsonResponseBuffer
{
    /// <summary>A buffer that grew past this (an unusually large body) is dropped rather than kept.</summary>
    private const int MaxKeptCapacity = 16 * 1024;

    [ThreadStatic]
    private static JsonResponseBuffer? t_cached;

    private readonly ArrayBufferWriter<byte> _buffer = new(1024);

    private JsonResponseBuffer() => Writer = new Utf8JsonWriter(_buffer);

    public Utf8JsonWriter Writer { get; }

    /// <summary>The JSON written so far (the writer is flushed first).</summary>
    public ReadOnlyMemory<byte> Written
    {
        get
        {
            Writer.Flush();
            return _buffer.WrittenMemory;
        }
    }

    public static JsonResponseBuffer Rent()
    {
        var rented = t_cached ?? new JsonResponseBuffer();
        t_cached = null;
        rented.Writer.Reset(rented._buffer);
        return rented;
    }

    public void Return()
    {
        Writer.Reset(_buffer);
        _buffer.Clear();
        if (_buffer.Capacity <= MaxKeptCapacity)
        {
            t_cached = this;
        }
    }
}
