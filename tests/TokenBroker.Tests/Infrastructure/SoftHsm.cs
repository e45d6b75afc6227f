using System.Diagnostics;

namespace TokenBroker.Tests.Infrastructure;

/// <summary>
/// A real SoftHSM2 (PKCS#11) token directory in a temp dir, created once per test process: SoftHSM reads
/// <c>SOFTHSM2_CONF</c> once per process and OpenSSL's pkcs11 engine caches its slots, so every in-process test
/// shares these tokens. Tests that need their own token directory (faults) start the broker as a child process.
/// Without <c>softhsm2-util</c> the tests are ignored locally and FAIL under <c>CI=true</c>.
/// </summary>
internal sealed partial class SoftHsm
{
    public const string Module = "/usr/lib/softhsm/libsofthsm2.so";
    public const string Token = "tb";
    public const string Pin = "1234";

    /// <summary>A second token no test logs in to correctly, so that a wrong PIN really reaches C_Login.</summary>
    public const string LonelyToken = "tb-lonely";

    private static readonly Lazy<SoftHsm> Instance = new(() => Create(), LazyThreadSafetyMode.ExecutionAndPublication);

    private SoftHsm(string dir)
    {
        Dir = dir;
        PinFile = Path.Combine(dir, "pin");
        File.WriteAllText(PinFile, Pin + "\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(PinFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    public string Dir { get; }

    /// <summary>A file holding the PIN with a trailing newline, as `echo` writes it.</summary>
    public string PinFile { get; }

    /// <summary>Key labels in token <see cref="Token"/> by algorithm; <c>rsa1024</c> is a too-short key.</summary>
    public static string Label(string algorithm) => algorithm switch
    {
        "ES256" => "ec256",
        "ES384" => "ec384",
        "RS256" or "PS256" => "rsa2048",
        _ => algorithm,
    };

    public static string UriFor(string algorithm, string token = Token) => $"pkcs11:token={token};object={Label(algorithm)}";

    /// <summary>The shared token directory; skips (or fails under CI=true) when SoftHSM2 is not installed.</summary>
    public static SoftHsm Shared
    {
        get
        {
            RequireTools();
            return Instance.Value;
        }
    }

    public static void RequireTools()
    {
        if (File.Exists("/usr/bin/softhsm2-util") && File.Exists(Module) && File.Exists("/usr/bin/pkcs11-tool"))
        {
            return;
        }

        const string message = "SoftHSM2 is not installed (softhsm2, opensc, libengine-pkcs11-openssl); scripts/test.sh installs it";
        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
        {
            Assert.Fail(message);
        }

        Assert.Ignore(message);
    }

    /// <summary>Creates a token directory with tokens and keys; used by child-process tests for a private one.</summary>
    public static string CreateTokenDirectory(params (string Token, (string Label, string Type)[] Keys)[] tokens)
    {
        var dir = Directory.CreateTempSubdirectory("tb-softhsm-").FullName;
        Directory.CreateDirectory(Path.Combine(dir, "tokens"));
        var conf = Path.Combine(dir, "softhsm2.conf");
        File.WriteAllText(conf, $"directories.tokendir = {dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n");
        var env = new Dictionary<string, string> { ["SOFTHSM2_CONF"] = conf };
        foreach (var (token, keys) in tokens)
        {
            Run(env, "softhsm2-util", "--init-token", "--free", "--label", token, "--pin", Pin, "--so-pin", "5678");
            var id = 1;
            foreach (var (label, type) in keys)
            {
                Run(env, "pkcs11-tool", "--module", Module, "--token-label", token, "--login", "--pin", Pin, "--keypairgen", "--key-type", type, "--label", label, "--id", (id++).ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        return dir;
    }

    public static string ConfFor(string dir) => Path.Combine(dir, "softhsm2.conf");

    private static SoftHsm Create()
    {
        var dir = CreateTokenDirectory(
            (Token, [("ec256", "EC:prime256v1"), ("ec384", "EC:secp384r1"), ("rsa2048", "rsa:2048"), ("rsa1024", "rsa:1024")]),
            (LonelyToken, [("ec256", "EC:prime256v1")]));

        // Before the first engine call in this process: SoftHSM reads its configuration once, with getenv(3), which
        // does not see Environment.SetEnvironmentVariable on Unix; so set it in the native environment too.
        Environment.SetEnvironmentVariable("SOFTHSM2_CONF", ConfFor(dir));
        if (NativeMethods.setenv("SOFTHSM2_CONF", ConfFor(dir), 1) != 0)
        {
            throw new InvalidOperationException("setenv(SOFTHSM2_CONF) failed");
        }

        return new SoftHsm(dir);
    }

    /// <summary>Deletes the shared token directory at the end of the run (see <see cref="SoftHsmCleanup"/>).</summary>
    internal static void DeleteIfCreated()
    {
        if (Instance.IsValueCreated)
        {
            Directory.Delete(Instance.Value.Dir, recursive: true);
        }
    }

    private static partial class NativeMethods
    {
        [System.Runtime.InteropServices.LibraryImport("libc", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
        internal static partial int setenv(string name, string value, int overwrite);
    }

    private static void Run(Dictionary<string, string> env, string tool, params string[] args)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        foreach (var (k, v) in env)
        {
            start.Environment[k] = v;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{tool} {string.Join(' ', args)} failed ({process.ExitCode}): {stderr} {stdout.Result}");
        }
    }
}
