using System.Text.Json;
using TokenBroker.Configuration;
using TokenBroker.Exchange;
using TokenBroker.Signing;

namespace TokenBroker.Discovery;

/// <summary>
/// The broker as an OIDC issuer: discovery metadata (OpenID Connect Discovery 1.0 and RFC 8414) and the JWKS,
/// in the shape AWS IAM OIDC providers and GCP workload identity federation accept.
/// </summary>
internal static class DiscoveryEndpoints
{
    public static void MapDiscoveryEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/.well-known/openid-configuration", WriteMetadata);
        app.MapGet("/.well-known/oauth-authorization-server", WriteMetadata);
        app.MapGet("/.well-known/jwks.json", (HttpContext http, SigningKeyRing keys) =>
        {
            // Half the announcement lead time: a verifier that cached the JWKS just before a key was published
            // fetches it again before that key signs (docs/keys.md).
            http.Response.Headers.CacheControl = $"public, max-age={(long)keys.JwksMaxAge.TotalSeconds}";
            return Results.Bytes(keys.JwksJson, "application/jwk-set+json");
        });
    }

    private static IResult WriteMetadata(HttpContext http, DiscoveryDocument document)
    {
        http.Response.Headers.CacheControl = "public, max-age=3600";
        return Results.Bytes(document.Json, "application/json");
    }
}

/// <summary>The discovery document, rendered once at start-up.</summary>
internal sealed class DiscoveryDocument
{
    public DiscoveryDocument(ResolvedSettings settings, SigningKeyRing keys)
    {
        var issuer = settings.Issuer;
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("issuer", issuer);
            w.WriteString("jwks_uri", issuer + "/.well-known/jwks.json");
            w.WriteString("token_endpoint", issuer + "/token");
            w.WriteString("introspection_endpoint", issuer + "/introspect");
            w.WriteString("revocation_endpoint", issuer + "/revoke");
            WriteArray(w, "grant_types_supported", [TokenTypes.TokenExchangeGrant]);
            WriteArray(w, "response_types_supported", ["id_token"]);
            WriteArray(w, "subject_types_supported", ["public"]);
            WriteArray(w, "id_token_signing_alg_values_supported", keys.Algorithms);
            WriteArray(w, "token_endpoint_auth_methods_supported", ["none"]);
            WriteArray(w, "introspection_endpoint_auth_methods_supported", ["client_secret_basic"]);
            WriteArray(w, "revocation_endpoint_auth_methods_supported", ["none"]);
            WriteArray(w, "scopes_supported", ["openid"]);
            WriteArray(w, "claims_supported", ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "repo", "repo_id", "ref", "branch", "environment", "run_id", "stage", "provider", "rule"]);
            w.WriteEndObject();
        }

        Json = buffer.ToArray();
    }

    public byte[] Json { get; }

    private static void WriteArray(Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values)
        {
            w.WriteStringValue(v);
        }

        w.WriteEndArray();
    }
}
