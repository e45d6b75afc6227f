namespace TokenBroker.Configuration;

/// <summary>Checks and redacts RFC 7512 <c>pkcs11:</c> URIs.</summary>
public static class Pkcs11UriCheck
{
    /// <summary>What is wrong with a configured key URI; empty when it is usable.</summary>
    public static IEnumerable<string> Problems(string uri)
    {
        if (!uri.StartsWith("pkcs11:", StringComparison.Ordinal))
        {
            yield return "must start with 'pkcs11:' (RFC 7512)";
            yield break;
        }

        var attributes = Attributes(uri).ToList();
        if (attributes.Any(a => a.Name is "pin-value" or "pin-source"))
        {
            yield return "must not hold a PIN (pin-value, pin-source); use PinFile or PinEnvironmentVariable";
        }

        if (!attributes.Any(a => a.Name is "object" or "id"))
        {
            yield return "must name the key with 'object=' (label) or 'id='";
        }

        if (attributes.FirstOrDefault(a => a.Name == "type") is { Name: not null } type && type.Value != "private")
        {
            yield return $"has type={type.Value}; a signing key is type=private";
        }

        if (uri.Any(char.IsWhiteSpace))
        {
            yield return "must not contain white space (percent-encode it)";
        }
    }

    /// <summary>The URI the engine is given: <c>type=private</c> added when absent.</summary>
    public static string ForPrivateKey(string uri)
    {
        if (Attributes(uri).Any(a => a.Name == "type"))
        {
            return uri;
        }

        var query = uri.IndexOf('?', StringComparison.Ordinal);
        return query < 0 ? uri + ";type=private" : uri[..query] + ";type=private" + uri[query..];
    }

    /// <summary>The URI without any PIN attribute, for messages and logs.</summary>
    public static string Redact(string uri)
    {
        var scheme = uri.StartsWith("pkcs11:", StringComparison.Ordinal) ? "pkcs11:" : "";
        var query = uri.IndexOf('?', StringComparison.Ordinal);
        var path = query < 0 ? uri[scheme.Length..] : uri[scheme.Length..query];
        var redacted = scheme + string.Join(';', path.Split(';').Where(p => !IsPin(p)));
        if (query >= 0)
        {
            var q = uri[(query + 1)..].Split('&').Where(p => !IsPin(p)).ToList();
            if (q.Count > 0)
            {
                redacted += "?" + string.Join('&', q);
            }
        }

        return redacted;
    }

    private static bool IsPin(string attribute) =>
        attribute.StartsWith("pin-value", StringComparison.OrdinalIgnoreCase) || attribute.StartsWith("pin-source", StringComparison.OrdinalIgnoreCase);

    private static IEnumerable<(string? Name, string Value)> Attributes(string uri)
    {
        var body = uri["pkcs11:".Length..];
        foreach (var part in body.Split(';', '?', '&'))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                yield return (part[..eq], part[(eq + 1)..]);
            }
        }
    }
}
