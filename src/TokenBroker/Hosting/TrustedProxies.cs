using Microsoft.AspNetCore.HttpOverrides;
using TokenBroker.Configuration;

namespace TokenBroker.Hosting;

/// <summary>
/// <c>X-Forwarded-For</c> and <c>X-Forwarded-Proto</c>, believed only from the configured proxies. Without any, the
/// middleware is not added at all, so these headers are ignored (ASP.NET Core would otherwise trust loopback by
/// default). <c>X-Forwarded-Host</c> is never applied: no URL the broker publishes is derived from request headers.
/// </summary>
internal static class TrustedProxies
{
    public static IApplicationBuilder UseTrustedProxies(this IApplicationBuilder app, ResolvedProxy proxy)
    {
        if (!proxy.Any)
        {
            return app;
        }

        var options = new ForwardedHeadersOptions
        {
            ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto,
            ForwardLimit = proxy.ForwardLimit,
            RequireHeaderSymmetry = false,
        };
        options.KnownProxies.Clear();
        options.KnownIPNetworks.Clear();
        foreach (var address in proxy.Addresses)
        {
            options.KnownProxies.Add(address);
        }

        foreach (var network in proxy.Networks)
        {
            options.KnownIPNetworks.Add(network);
        }

        return app.UseForwardedHeaders(options);
    }
}
