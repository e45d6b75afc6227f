# TokenBroker container image: a framework-dependent build of src/TokenBroker (assembly tokenbroker.dll).
#
#   docker build -t tokenbroker .
#   docker run --rm -p 8080:8080 --read-only \
#     -e TokenBroker__Issuer=https://sts.ci.example.com \
#     -e TokenBroker__Rules__Paths__0=/etc/tokenbroker/rules \
#     -e TokenBroker__Signing__Keys__0__Path=/run/secrets/tokenbroker/es256.pem \
#     -v "$PWD/rules:/etc/tokenbroker/rules:ro" \
#     -v "$PWD/secrets/es256.pem:/run/secrets/tokenbroker/es256.pem:ro" \
#     tokenbroker
#
# Configuration comes from TokenBroker__... environment variables, or from a mounted JSON/YAML file: arguments
# after the image name are appended to `serve`, e.g. `docker run ... tokenbroker --config /etc/tokenbroker/config.json`.
# Nothing secret is built into the image: keys and rules are mounted at run time.

# global.json pins the SDK to 10.0.401 with rollForward latestPatch, so the build image must carry a 10.0.4xx
# SDK at or above 10.0.401. The floating 10.0 tag tracks the newest SDK feature band; if it ever carries another
# band, pass --build-arg SDK_IMAGE=mcr.microsoft.com/dotnet/sdk:10.0.4xx with a matching patch.
ARG SDK_IMAGE=mcr.microsoft.com/dotnet/sdk:10.0
ARG RUNTIME_IMAGE=mcr.microsoft.com/dotnet/aspnet:10.0

# Only the files that decide the package graph (*.csproj, *.props, *.targets under src/, e.g. the csproj files and
# src/Directory.Build.props), with their paths. This stage reruns on every source change, but its output only
# changes when a project file does, so the restore layer below stays cached across source edits.
FROM ${SDK_IMAGE} AS projects
WORKDIR /src
COPY src/ src/
RUN find src -type f ! \( -name '*.csproj' -o -name '*.props' -o -name '*.targets' \) -delete

FROM ${SDK_IMAGE} AS build
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 \
    DOTNET_NOLOGO=1
WORKDIR /src

# Restore first, from the project files only, so this layer is cached until they change.
COPY global.json Directory.Build.props Directory.Packages.props .editorconfig ./
COPY --from=projects /src/ ./
RUN dotnet restore src/TokenBroker/TokenBroker.csproj

# Sources. The csproj embeds config/rules/*.yaml (the built-in sample rules) and samples/fixtures/*.json
# (the demo's job-token claims), so both are needed to build.
COPY src/ src/
COPY config/ config/
COPY samples/fixtures/ samples/fixtures/
RUN dotnet publish src/TokenBroker/TokenBroker.csproj -c Release -o /app --no-restore -p:UseAppHost=false

FROM ${RUNTIME_IMAGE} AS runtime

# curl for HEALTHCHECK (the aspnet image has neither curl nor wget); OpenSSL's pkcs11 engine and p11-kit for
# PKCS#11 (HSM) signing keys. The HSM vendor's PKCS#11 module itself is mounted or added in a derived image and
# registered with p11-kit (see docs/keys.md); nothing vendor-specific is built in.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl libengine-pkcs11-openssl p11-kit \
    && rm -rf /var/lib/apt/lists/*

# The base image sets ASPNETCORE_HTTP_PORTS=8080; the listen address is given explicitly below instead, so clear
# both variables rather than have Kestrel log that one overrides the other.
# DOTNET_EnableDiagnostics=0 stops the runtime from creating its diagnostics IPC socket under /tmp, so the
# container runs with a read-only root filesystem and no writable mount. To attach dotnet-trace or
# dotnet-counters, set it to 1 and mount a tmpfs on /tmp.
ENV ASPNETCORE_URLS="" \
    ASPNETCORE_HTTP_PORTS="" \
    DOTNET_EnableDiagnostics=0 \
    DOTNET_NOLOGO=1

WORKDIR /app
# Owned by root and not writable by the app user; the broker writes nothing to disk.
COPY --from=build /app ./

# The non-root 'app' user of the .NET images (uid 1654). Mounted key files must be readable by this uid.
USER $APP_UID

EXPOSE 8080

# Liveness only; /readyz (rules loaded, key signs, state answers) is the endpoint for an orchestrator's
# readiness probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1

# Listening on 0.0.0.0 means the broker cannot derive its issuer from the listen URL: it REFUSES TO START
# (exit code 2) unless TokenBroker__Issuer is set to its public https URL (the URL behind the TLS proxy),
# which is also the audience jobs must request for their job tokens.
ENTRYPOINT ["dotnet", "/app/tokenbroker.dll", "serve", "--urls", "http://0.0.0.0:8080"]
