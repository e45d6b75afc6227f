using TokenBroker.Configuration;

namespace TokenBroker.Hosting;

/// <summary>
/// Response headers every answer carries. The broker serves JSON and text only, never a page, so content may not be
/// sniffed, framed, or load anything; responses are not cached unless the endpoint says so (discovery and JWKS set
/// their own <c>max-age</c>); https responses carry HSTS.
/// </summary>
internal static class SecurityHeaders
{
    public static IApplicationBuilder UseSecurityHeaders(this IApplicationBuilder app, ResolvedSettings settings)
    {
        var hsts = settings.Tls.HstsMaxAgeSeconds > 0 ? $"max-age={settings.Tls.HstsMaxAgeSeconds}" : null;
        return app.Use((http, next) =>
        {
            var headers = http.Response.Headers;
            headers.XContentTypeOptions = "nosniff";
            headers.XFrameOptions = "DENY";
            headers.ContentSecurityPolicy = "default-src 'none'; frame-ancestors 'none'";
            headers["Referrer-Policy"] = "no-referrer";
            if (hsts is not null && http.Request.IsHttps)
            {
                headers.StrictTransportSecurity = hsts;
            }

            // Not cacheable unless the endpoint says so: discovery and JWKS replace this with their own max-age.
            // Set here rather than in an OnStarting callback (one allocation and one callback per request less);
            // a response whose headers the server resets for an unhandled exception is a 500 without them either way.
            headers.CacheControl = "no-store";
            return next(http);
        });
    }
}
