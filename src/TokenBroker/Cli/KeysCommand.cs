using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.IdentityModel.Tokens;
using TokenBroker.Configuration;
using TokenBroker.Hosting;
using TokenBroker.Signing;

namespace TokenBroker.Cli;

/// <summary>
/// <c>tokenbroker keys</c>: generate a local key, print the JWKS a configuration publishes, check HSM keys, list
/// each key's state and dates, and measure signing throughput. Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
/// </summary>
internal static class KeysCommand
{
    public static Command Create(TextWriter output, TextWriter error, TimeProvider time)
    {
        var keys = new Command("keys", "Signing keys: generate, jwks, check, list, bench.");

        var algorithm = new Option<string>("--algorithm") { Description = "ES256 (default), ES384, RS256 or PS256.", DefaultValueFactory = _ => "ES256" };
        var outFile = new Option<string>("--out") { Description = "The PEM file to write (mode 0600). It must not exist.", Required = true };
        var generate = new Command("generate", "Generate a local signing key as a PKCS#8 PEM file (mode 0600) and print its kid and public JWK.") { algorithm, outFile };
        generate.SetAction(parse => Generate(parse.GetValue(algorithm)!, parse.GetValue(outFile)!, output, error));

        keys.Subcommands.Add(generate);
        keys.Subcommands.Add(WithConfig("jwks", "Print the JWKS the configuration publishes now (or --at a time).", output, error, time, Jwks));
        keys.Subcommands.Add(WithConfig("check", "Open every configured key (PKCS#11: reach the token, log in), sign a test payload and verify it.", output, error, time, Check));
        keys.Subcommands.Add(WithConfig("list", "Show each configured key's state and dates now (or --at a time), without opening the keys.", output, error, time, List));

        var seconds = new Option<double>("--seconds") { Description = "Measuring time per key (0.2 to 60). Default: 2.", DefaultValueFactory = _ => 2.0 };
        var bench = WithConfig("bench", "Signatures per second, one thread: local ES256 and RS256, and every configured PKCS#11 key.", output, error, time, null);
        bench.Options.Add(seconds);
        bench.SetAction(parse => Bench(parse, seconds, output, error, time));
        keys.Subcommands.Add(bench);
        return keys;
    }

    private static readonly Option<string?> ConfigOption = new("--config") { Description = "A JSON or YAML configuration file (environment variables TokenBroker__... override it)." };
    private static readonly Option<DateTimeOffset?> AtOption = new("--at") { Description = "Evaluate the key schedule at this time (ISO 8601) instead of now." };

    private static Command WithConfig(string name, string description, TextWriter output, TextWriter error, TimeProvider time, Func<ResolvedSettings, DateTimeOffset, TextWriter, TextWriter, TimeProvider, int>? run)
    {
        var command = new Command(name, description) { ConfigOption };
        if (name is "jwks" or "list")
        {
            command.Options.Add(AtOption);
        }

        if (run is not null)
        {
            command.SetAction(parse =>
            {
                var at = name is "jwks" or "list" ? parse.GetValue(AtOption) : null;
                var clock = at is { } fixedTime ? new FixedTime(fixedTime) : time;
                var settings = Resolve(parse.GetValue(ConfigOption), clock, error);
                return settings is null ? BrokerCli.Usage : run(settings, clock.GetUtcNow(), output, error, clock);
            });
        }

        return command;
    }

    private static ResolvedSettings? Resolve(string? configFile, TimeProvider time, TextWriter error)
    {
        var errors = new List<string>();
        var settings = BrokerApp.ResolveSettings(new BrokerAppOptions { ConfigFile = configFile, Time = time }, errors);
        if (settings is null)
        {
            error.WriteLine($"tokenbroker keys: the configuration has {errors.Count} problem(s):");
            foreach (var e in errors)
            {
                error.WriteLine($"  - {e}");
            }
        }

        return settings;
    }

    private static int Generate(string algorithm, string path, TextWriter output, TextWriter error)
    {
        if (Array.IndexOf(SettingsResolver.SigningAlgorithms, algorithm) < 0)
        {
            error.WriteLine($"tokenbroker keys generate: --algorithm '{algorithm}' is not one of {string.Join(", ", SettingsResolver.SigningAlgorithms)}");
            return BrokerCli.Usage;
        }

        using AsymmetricAlgorithm key = algorithm switch
        {
            "ES256" => ECDsa.Create(ECCurve.NamedCurves.nistP256),
            "ES384" => ECDsa.Create(ECCurve.NamedCurves.nistP384),
            _ => RSA.Create(3072),
        };
        var pem = key.ExportPkcs8PrivateKeyPem();
        try
        {
            // CreateNew: never overwrite a key; 0600 from the first byte on Unix.
            var fileOptions = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                fileOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using var stream = new FileStream(path, fileOptions);
            stream.Write(Encoding.ASCII.GetBytes(pem));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"tokenbroker keys generate: cannot write '{path}': {e.Message}");
            return BrokerCli.Failed;
        }

        var jwk = SignerKeys.PublicJwk(key);
        var kid = Base64UrlEncoder.Encode(jwk.ComputeJwkThumbprint());
        output.WriteLine($"wrote {algorithm} key to {path} (mode 0600)");
        output.WriteLine($"kid (RFC 7638 thumbprint): {kid}");
        output.WriteLine("configure it as:");
        output.WriteLine($"  TokenBroker:Signing:Keys:N:Path={Path.GetFullPath(path)}");
        output.WriteLine($"  TokenBroker:Signing:Keys:N:Algorithm={algorithm}");
        output.WriteLine("  TokenBroker:Signing:Keys:N:ActivateAt=<at least Signing:AnnouncementLeadTime after it is deployed>");
        return BrokerCli.Ok;
    }

    private static int Jwks(ResolvedSettings settings, DateTimeOffset at, TextWriter output, TextWriter error, TimeProvider time)
    {
        using var ring = Open(settings, time, error);
        if (ring is null)
        {
            return BrokerCli.Failed;
        }

        output.WriteLine(Encoding.UTF8.GetString(ring.JwksJson));
        error.WriteLine($"Cache-Control: public, max-age={(long)ring.JwksMaxAge.TotalSeconds}");
        return BrokerCli.Ok;
    }

    private static int Check(ResolvedSettings settings, DateTimeOffset at, TextWriter output, TextWriter error, TimeProvider time)
    {
        var failures = 0;
        for (var i = 0; i < settings.SigningKeys.Count; i++)
        {
            var options = settings.SigningKeys[i];
            var timeline = settings.KeyTimelines[i];
            var where = options.Source == "pkcs11" ? Pkcs11UriCheck.Redact(options.Uri!) : options.Source == "file" ? options.Path : options.Source == "aws-kms" ? $"aws-kms {options.KmsKeyId} ({options.Region})" : "generated";
            if (timeline.StateAt(at) == KeyState.Removed)
            {
                output.WriteLine($"skip {timeline.Name} {options.Algorithm} {where}: removed");
                continue;
            }

            try
            {
                var signer = SigningKeyRing.Open(timeline.Name, options, settings.SigningReopenInterval, time);
                try
                {
                    var payload = Encoding.ASCII.GetBytes("tokenbroker keys check " + at.ToString("O", CultureInfo.InvariantCulture));
                    var signature = signer.Sign(payload);
                    if (!Verifies(signer, payload, signature))
                    {
                        throw new InvalidOperationException("the signature does not verify with the key's public key");
                    }

                    output.WriteLine($"ok   {timeline.Name} {options.Algorithm} {where}: kid {signer.KeyId}, signed and verified a test payload");
                }
                finally
                {
                    (signer as IDisposable)?.Dispose();
                }
            }
            catch (Exception e) when (e is InvalidOperationException or SigningUnavailableException or CryptographicException)
            {
                failures++;
                output.WriteLine($"FAIL {timeline.Name} {options.Algorithm} {where}: {e.Message}");
            }
        }

        output.WriteLine(failures == 0 ? "all keys usable" : $"{failures} key(s) unusable");
        return failures == 0 ? BrokerCli.Ok : BrokerCli.Failed;
    }

    private static int List(ResolvedSettings settings, DateTimeOffset at, TextWriter output, TextWriter error, TimeProvider time)
    {
        output.WriteLine($"at {at:O}; JWKS max-age {(long)settings.JwksMaxAge.TotalSeconds} s; default algorithm {settings.DefaultAlgorithm}");
        if (settings.KeyPlan is { RotateEvery: { } every, RotateFrom: { } from })
        {
            output.WriteLine($"rotate every {every} from {from:O}");
        }

        if (settings.SigningKeys.Any(k => k.Standby))
        {
            output.WriteLine("dates from configuration only: admin rotations recorded in the state store are not shown (GET /admin/keys shows them)");
        }
        foreach (var (audience, algorithm) in settings.AudienceAlgorithms)
        {
            output.WriteLine($"audience {audience}: {algorithm}");
        }

        output.WriteLine(string.Format(CultureInfo.InvariantCulture, "{0,-15} {1,-6} {2,-9} {3,-10} {4,-26} {5,-26} {6,-26} {7,-26} {8}", "key", "alg", "source", "state", "publish", "activate", "retire", "remove", "kid / location"));
        for (var i = 0; i < settings.SigningKeys.Count; i++)
        {
            var o = settings.SigningKeys[i];
            var t = settings.KeyTimelines[i];
            var where = o.Source == "pkcs11" ? Pkcs11UriCheck.Redact(o.Uri!) : o.Source == "file" ? o.Path : o.Source == "aws-kms" ? $"aws-kms {o.KmsKeyId} ({o.Region})" : "in memory";
            output.WriteLine(string.Format(CultureInfo.InvariantCulture, "{0,-15} {1,-6} {2,-9} {3,-10} {4,-26} {5,-26} {6,-26} {7,-26} {8}",
                t.Name, t.Algorithm, o.Source, t.StateAt(at).ToString().ToLowerInvariant(),
                t.Standby ? "on admin rotation" : Date(t.PublishAt, "always"), t.Standby ? "-" : Date(t.ActivateAt, "from start"), t.Standby ? "-" : Date(t.RetireAt, "never"), t.Standby ? "-" : Date(t.RemoveAt, "never"),
                (o.KeyId ?? "(thumbprint)") + " " + where));
        }

        return BrokerCli.Ok;
    }

    private static int Bench(ParseResult parse, Option<double> secondsOption, TextWriter output, TextWriter error, TimeProvider time)
    {
        var seconds = parse.GetValue(secondsOption);
        if (seconds is < 0.2 or > 60)
        {
            error.WriteLine("tokenbroker keys bench: --seconds must be between 0.2 and 60");
            return BrokerCli.Usage;
        }

        var configFile = parse.GetValue(ConfigOption);
        var candidates = new List<(string Label, Func<ITokenSigner> Open)>
        {
            ("local ES256", () => LocalKeySigner.Generate("ES256")),
            ("local RS256 (2048)", () => LocalKeySigner.Generate("RS256")),
        };
        if (configFile is not null)
        {
            var settings = Resolve(configFile, time, error);
            if (settings is null)
            {
                return BrokerCli.Usage;
            }

            for (var i = 0; i < settings.SigningKeys.Count; i++)
            {
                var options = settings.SigningKeys[i];
                if (options.Source == "pkcs11")
                {
                    var name = settings.KeyTimelines[i].Name;
                    candidates.Add(($"pkcs11 {options.Algorithm} {Pkcs11UriCheck.Redact(options.Uri!)}", () => SigningKeyRing.Open(name, options, settings.SigningReopenInterval, time)));
                }
            }
        }

        output.WriteLine($"signatures per second, one thread, {seconds:0.#} s per key ({Environment.ProcessorCount} CPUs, {System.Runtime.InteropServices.RuntimeInformation.OSDescription})");
        var failed = false;
        foreach (var (label, open) in candidates)
        {
            try
            {
                var signer = open();
                try
                {
                    var payload = new byte[300]; // about the size of a JWS signing input
                    RandomNumberGenerator.Fill(payload);
                    for (var i = 0; i < 20; i++)
                    {
                        signer.Sign(payload);
                    }

                    var count = 0;
                    var started = time.GetTimestamp();
                    var budget = TimeSpan.FromSeconds(seconds);
                    while (time.GetElapsedTime(started) < budget)
                    {
                        signer.Sign(payload);
                        count++;
                    }

                    var rate = count / time.GetElapsedTime(started).TotalSeconds;
                    output.WriteLine(string.Format(CultureInfo.InvariantCulture, "{0,-60} {1,10:0} /s", label, rate));
                }
                finally
                {
                    (signer as IDisposable)?.Dispose();
                }
            }
            catch (Exception e) when (e is InvalidOperationException or SigningUnavailableException or CryptographicException)
            {
                failed = true;
                output.WriteLine($"{label,-60} FAILED: {e.Message}");
            }
        }

        return failed ? BrokerCli.Failed : BrokerCli.Ok;
    }

    private static SigningKeyRing? Open(ResolvedSettings settings, TimeProvider time, TextWriter error)
    {
        try
        {
            return SigningKeyRing.FromSettings(settings, time);
        }
        catch (Exception e) when (e is InvalidOperationException or CryptographicException or ArgumentException)
        {
            error.WriteLine($"tokenbroker keys: {e.Message}");
            return null;
        }
    }

    private static bool Verifies(ITokenSigner signer, byte[] payload, byte[] signature)
    {
        var jwk = signer.PublicKey;
        var hash = SignerKeys.HashFor(signer.Algorithm);
        if (jwk.Kty == JsonWebAlgorithmsKeyTypes.EllipticCurve)
        {
            using var ec = ECDsa.Create(new ECParameters
            {
                Curve = jwk.Crv == JsonWebKeyECTypes.P384 ? ECCurve.NamedCurves.nistP384 : ECCurve.NamedCurves.nistP256,
                Q = new ECPoint { X = Base64UrlEncoder.DecodeBytes(jwk.X), Y = Base64UrlEncoder.DecodeBytes(jwk.Y) },
            });
            return ec.VerifyData(payload, signature, hash);
        }

        using var rsa = RSA.Create(new RSAParameters { Modulus = Base64UrlEncoder.DecodeBytes(jwk.N), Exponent = Base64UrlEncoder.DecodeBytes(jwk.E) });
        return rsa.VerifyData(payload, signature, hash, SignerKeys.PaddingFor(signer.Algorithm));
    }

    private static string Date(DateTimeOffset? date, string none) => date is { } d ? d.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) : none;

    /// <summary>A clock stopped at one instant, for <c>--at</c>.</summary>
    private sealed class FixedTime(DateTimeOffset at) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => at;
    }
}
