using System.IO.Pipes;
using Microsoft.Win32.SafeHandles;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Security.Cryptography;
using Microsoft.IdentityModel.Tokens;

namespace TokenBroker.Signing;

/// <summary>
/// Signs with a private key that stays in an HSM, reached through OpenSSL's pkcs11 engine (libp11) and addressed by
/// an RFC 7512 <c>pkcs11:</c> URI. The public key published in the JWKS is read from the HSM when the key is opened.
/// </summary>
/// <remarks>
/// The PIN never appears in a URI that can be logged: it is written to an anonymous pipe and the engine is given
/// <c>pin-source=file:/dev/fd/N</c>, because libp11 prints the full URI to stderr when a key cannot be loaded.
/// When signing fails (session lost, HSM unreachable) the signer answers <see cref="SigningUnavailableException"/>
/// and reopens the key by itself, at most once per <c>reopenInterval</c>; a reopened key must have the same public
/// key, or it is refused. A failed key is released so that libp11 can let go of the PKCS#11 module: see
/// <see cref="EngineKeys"/>.
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed partial class Pkcs11Signer : ITokenSigner, IDisposable
{
    private readonly string _name;
    private readonly string _uri;
    private readonly Func<string> _readPin;
    private readonly TimeProvider _time;
    private readonly TimeSpan _reopenInterval;
    private ILogger _logger;
    private readonly string _thumbprint;
    private readonly Lock _reopenLock = new();
    private volatile AsymmetricAlgorithm? _key;
    private long? _lastReopenAttempt;
    private bool _disposed;

    private Pkcs11Signer(string name, string uri, Func<string> readPin, string algorithm, string? keyId, TimeProvider time, TimeSpan reopenInterval, ILogger logger, AsymmetricAlgorithm key)
    {
        _name = name;
        _uri = TokenBroker.Configuration.Pkcs11UriCheck.Redact(uri);
        _readPin = readPin;
        _time = time;
        _reopenInterval = reopenInterval;
        _logger = logger;
        _key = key;
        Algorithm = algorithm;
        PublicKey = SignerKeys.PublishedJwk(key, algorithm, keyId);
        _thumbprint = SignerKeys.Thumbprint(PublicKey);
        KeyId = PublicKey.Kid;
    }

    public string KeyId { get; }

    public string Algorithm { get; }

    public JsonWebKey PublicKey { get; }

    /// <summary>The configured URI (it never holds a PIN).</summary>
    public string Uri => _uri;

    /// <summary>Opens the key and reads its public half from the HSM.</summary>
    /// <param name="name">How messages name the key, e.g. <c>Signing:Keys:0</c>.</param>
    /// <param name="uri">An RFC 7512 URI without any PIN attribute.</param>
    /// <param name="readPin">Returns the user PIN (read from a file or an environment variable).</param>
    /// <param name="algorithm">ES256, ES384, RS256 or PS256; the key must fit it.</param>
    /// <param name="keyId">The kid; default: the RFC 7638 thumbprint of the public key.</param>
    /// <param name="time">Clock for the reopen rate limit.</param>
    /// <param name="reopenInterval">Least time between two attempts to reopen a failed key.</param>
    /// <param name="logger">Where signing faults and reopens are logged (never the PIN).</param>
    /// <exception cref="InvalidOperationException">The key cannot be opened or does not fit the algorithm; the message names the key and the URI, never the PIN.</exception>
    public static Pkcs11Signer Open(string name, string uri, Func<string> readPin, string algorithm, string? keyId, TimeProvider time, TimeSpan reopenInterval, ILogger? logger = null)
    {
        var key = OpenKey(name, TokenBroker.Configuration.Pkcs11UriCheck.Redact(uri), readPin, algorithm);
        return new Pkcs11Signer(name, uri, readPin, algorithm, keyId, time, reopenInterval, logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, key);
    }

    public byte[] Sign(ReadOnlySpan<byte> signingInput)
    {
        // The key in hand, then once more after a (rate-limited) reopen: a lost HSM session costs one retry, and a
        // key replaced or invalidated by a concurrent request is unavailable for this request, never a 500.
        var key = _key ?? Reopen();
        for (var attempt = 0; key is not null; attempt++)
        {
            try
            {
                return SignWith(key, signingInput);
            }
            catch (CryptographicException e)
            {
                Log.SignFailed(_logger, _name, _uri, e.Message);
                Invalidate(key, releaseAllKeys: true);
            }
            catch (ObjectDisposedException)
            {
                // Replaced by a concurrent reopen (then try the new key), or released after another key failed (then
                // open it again).
                Invalidate(key, releaseAllKeys: false);
            }

            if (attempt == 1)
            {
                break;
            }

            key = Reopen();
        }

        throw new SigningUnavailableException($"HSM key {_name} ({_uri}) cannot sign right now");
    }

    /// <summary>Logs through the host's logging once it exists (keys are opened before the host is built).</summary>
    internal void UseLogger(ILogger logger) => _logger = logger;

    /// <summary>Reads a PIN file; one trailing newline is not part of the PIN.</summary>
    public static Func<string> PinFromFile(string path) => () =>
    {
        var text = File.ReadAllText(path);
        text = text.EndsWith("\r\n", StringComparison.Ordinal) ? text[..^2] : text.EndsWith('\n') ? text[..^1] : text;
        return text.Length > 0 ? text : throw new InvalidOperationException($"the PIN file '{path}' is empty");
    };

    /// <summary>Reads a PIN from an environment variable, at every (re)open.</summary>
    public static Func<string> PinFromEnvironment(string variable) => () =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } pin ? pin : throw new InvalidOperationException($"the environment variable '{variable}' is not set or empty");

    public void Dispose()
    {
        lock (_reopenLock)
        {
            _disposed = true;
            if (_key is { } key)
            {
                EngineKeys.Release(key);
            }

            _key = null;
        }
    }

    private byte[] SignWith(AsymmetricAlgorithm key, ReadOnlySpan<byte> data)
    {
        EngineKeys.Gate.EnterReadLock();
        try
        {
            return key switch
            {
                ECDsa ec => ec.SignData(data, SignerKeys.HashFor(Algorithm)),
                RSA rsa => rsa.SignData(data, SignerKeys.HashFor(Algorithm), SignerKeys.PaddingFor(Algorithm)),
                _ => throw new CryptographicException("unsupported key type"),
            };
        }
        finally
        {
            EngineKeys.Gate.ExitReadLock();
        }
    }

    private void Invalidate(AsymmetricAlgorithm failed, bool releaseAllKeys)
    {
        lock (_reopenLock)
        {
            if (ReferenceEquals(_key, failed))
            {
                _key = null;
                EngineKeys.Release(failed);
            }
        }

        if (releaseAllKeys)
        {
            // The HSM failed under this key; keys that do not sign (standby, retired, next) would never fail and so
            // would keep the dead module alive. Every signer opens its key again when it next signs.
            EngineKeys.ReleaseAll();
        }
    }

    /// <summary>Opens the key again, at most once per reopen interval. Null while the HSM stays unusable.</summary>
    private AsymmetricAlgorithm? Reopen()
    {
        lock (_reopenLock)
        {
            if (_key is not null || _disposed)
            {
                return _key;
            }

            // The first attempt after a failure is immediate; later ones wait for the interval, so a dead HSM is
            // not hammered with logins (each failed login may count against the PIN's retry limit).
            if (_lastReopenAttempt is { } last && _time.GetElapsedTime(last) < _reopenInterval)
            {
                return null;
            }

            _lastReopenAttempt = _time.GetTimestamp();
            try
            {
                var key = OpenKey(_name, _uri, _readPin, Algorithm);
                var thumbprint = SignerKeys.Thumbprint(SignerKeys.PublicJwk(key));
                if (!string.Equals(thumbprint, _thumbprint, StringComparison.Ordinal))
                {
                    // Another key now answers at this URI: signing with it would issue tokens under a kid whose
                    // published public key does not verify them. Fail closed until the configuration says otherwise.
                    EngineKeys.Release(key);
                    Log.ReopenedDifferentKey(_logger, _name, _uri);
                    return null;
                }

                Log.Reopened(_logger, _name, _uri);
                _key = key;
                return key;
            }
            catch (InvalidOperationException e)
            {
                Log.ReopenFailed(_logger, _name, _uri, e.Message);
                return null;
            }
        }
    }

    private static AsymmetricAlgorithm OpenKey(string name, string uri, Func<string> readPin, string algorithm)
    {
        string pin;
        try
        {
            pin = readPin();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            throw new InvalidOperationException($"HSM key {name} ({uri}): the PIN cannot be read: {e.Message}", e);
        }

        SafePipeHandle readEnd;
        using (var pipe = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.None))
        {
            // Taking the client handle keeps the read end open after the server (write end) is disposed, so the
            // engine reads the PIN and then end of file.
            readEnd = pipe.ClientSafePipeHandle;
            pipe.Write(System.Text.Encoding.UTF8.GetBytes(pin));
        }

        SafeEvpPKeyHandle handle;
        using (readEnd)
        {
            var fd = readEnd.DangerousGetHandle().ToInt32();
            try
            {
                handle = EngineKeys.Load(WithPinSource(uri, $"/dev/fd/{fd}"));
            }
            catch (CryptographicException e)
            {
                throw new InvalidOperationException($"HSM key {name} ({uri}) cannot be opened: the token is unreachable, the PIN was rejected or no private key matches the URI ({e.Message})", e);
            }
        }

        AsymmetricAlgorithm key;
        try
        {
            key = EngineKeys.Wrap(handle, algorithm.StartsWith("ES", StringComparison.Ordinal));
        }
        catch (CryptographicException e)
        {
            throw new InvalidOperationException($"HSM key {name} ({uri}) is not a key for {algorithm} ({e.Message})", e);
        }

        try
        {
            return key is ECDsa ec ? CheckEc(name, uri, ec, algorithm) : CheckRsa(name, uri, (RSA)key);
        }
        catch (CryptographicException e)
        {
            EngineKeys.Release(key);
            throw new InvalidOperationException($"HSM key {name} ({uri}) is not a key for {algorithm} ({e.Message})", e);
        }
        catch (InvalidOperationException)
        {
            EngineKeys.Release(key);
            throw;
        }
    }

    private static string WithPinSource(string uri, string path) =>
        uri + (uri.Contains('?', StringComparison.Ordinal) ? "&" : ";") + "pin-source=file:" + path;

    private static ECDsa CheckEc(string name, string uri, ECDsa ec, string algorithm)
    {
        var parameters = ec.ExportParameters(false);
        var want = algorithm == "ES256" ? "1.2.840.10045.3.1.7" : "1.3.132.0.34";
        if (parameters.Curve.Oid.Value != want && parameters.Curve.Oid.FriendlyName != (algorithm == "ES256" ? "nistP256" : "nistP384"))
        {
            throw new InvalidOperationException($"HSM key {name} ({uri}) is on curve {parameters.Curve.Oid.FriendlyName ?? parameters.Curve.Oid.Value}; {algorithm} needs {(algorithm == "ES256" ? "P-256" : "P-384")}");
        }

        return ec;
    }

    private static RSA CheckRsa(string name, string uri, RSA rsa)
    {
        if (rsa.KeySize < 2048)
        {
            throw new InvalidOperationException($"HSM key {name} ({uri}) is RSA-{rsa.KeySize}; at least 2048 bits are required");
        }

        _ = rsa.ExportParameters(false);
        return rsa;
    }

    /// <summary>
    /// The keys opened through OpenSSL's pkcs11 engine, and what lets the engine start its PKCS#11 module afresh after
    /// the HSM failed.
    /// </summary>
    /// <remarks>
    /// libp11 (0.4.12 here) caches every private key it loaded, and each cached EVP_PKEY holds a functional reference
    /// to the engine (<c>EVP_PKEY_set1_engine</c>). So the engine is never finished and the module never finalized:
    /// a key that failed keeps coming back from the cache with its dead object handle, and a token that vanished does
    /// not come back either (SoftHSM2 answers CKR_GENERAL_ERROR for it until <c>C_Finalize</c>; libp11's
    /// <c>RE_ENUMERATE</c> fails on that very slot). Releasing the last hold on a key therefore detaches the engine
    /// from the key object. When no key holds the engine any more, its last <c>ENGINE_finish</c> frees libp11's slots
    /// and finalizes the module; the next open initializes it again and logs in afresh. So a key that fails to sign
    /// releases every key of the process (<see cref="ReleaseAll"/>), also those that never sign and would never fail;
    /// each signer opens its key again when it next signs. Signing holds the read side
    /// of <see cref="Gate"/>, loading and releasing the write side, so the module is never finalized under a
    /// signature in progress, in any signer of the process.
    /// </remarks>
    private static class EngineKeys
    {
        internal static readonly ReaderWriterLockSlim Gate = new(LockRecursionPolicy.NoRecursion);

        // The engine handle of each open key, and how many open keys share each EVP_PKEY (libp11 answers the same
        // cached object for the same key).
        private static readonly Dictionary<AsymmetricAlgorithm, SafeEvpPKeyHandle> Handles = new(ReferenceEqualityComparer.Instance);
        private static readonly Dictionary<IntPtr, int> Holders = [];

        /// <exception cref="CryptographicException">The engine cannot load the key.</exception>
        public static SafeEvpPKeyHandle Load(string uriWithPinSource)
        {
            Gate.EnterWriteLock();
            try
            {
                var handle = SafeEvpPKeyHandle.OpenPrivateKeyFromEngine("pkcs11", uriWithPinSource);
                var pointer = handle.DangerousGetHandle();
                Holders[pointer] = Holders.GetValueOrDefault(pointer) + 1;
                return handle;
            }
            finally
            {
                Gate.ExitWriteLock();
            }
        }

        /// <summary>The key of a handle from <see cref="Load"/>, to be given back with <see cref="Release"/>.</summary>
        /// <exception cref="CryptographicException">The key is not of the expected kind (the handle is released).</exception>
        public static AsymmetricAlgorithm Wrap(SafeEvpPKeyHandle handle, bool ec)
        {
            Gate.EnterWriteLock();
            try
            {
                AsymmetricAlgorithm key;
                try
                {
                    key = ec ? new ECDsaOpenSsl(handle) : new RSAOpenSsl(handle);
                }
                catch (CryptographicException)
                {
                    Drop(handle);
                    throw;
                }

                Handles.Add(key, handle);
                return key;
            }
            finally
            {
                Gate.ExitWriteLock();
            }
        }

        /// <summary>Disposes a key from <see cref="Wrap"/>; the last holder of an EVP_PKEY detaches the engine from it.</summary>
        public static void Release(AsymmetricAlgorithm key)
        {
            Gate.EnterWriteLock();
            try
            {
                key.Dispose();
                if (Handles.Remove(key, out var handle))
                {
                    Drop(handle);
                }
            }
            finally
            {
                Gate.ExitWriteLock();
            }
        }

        /// <summary>Releases every open key, so that the engine can finalize the module; their signers open them again.</summary>
        public static void ReleaseAll()
        {
            Gate.EnterWriteLock();
            try
            {
                foreach (var (key, handle) in Handles.ToArray())
                {
                    key.Dispose();
                    Handles.Remove(key);
                    Drop(handle);
                }
            }
            finally
            {
                Gate.ExitWriteLock();
            }
        }

        private static void Drop(SafeEvpPKeyHandle handle)
        {
            var pointer = handle.DangerousGetHandle();
            var left = Holders[pointer] - 1;
            if (left > 0)
            {
                Holders[pointer] = left;
                handle.Dispose();
                return;
            }

            Holders.Remove(pointer);
            var engine = IntPtr.Zero;
            var initialised = false;
            try
            {
                // Our own functional reference first: detaching the engine must not be its last reference while we
                // still hold the key, or libp11 would free its PKCS#11 key object under our EVP_PKEY (whose free
                // then reads it). Valgrind showed exactly that; in this order it is clean.
                engine = EngineById("pkcs11");
                initialised = engine != IntPtr.Zero && EngineInit(engine) == 1;
                if (initialised)
                {
                    _ = EvpPkeySet1Engine(pointer, IntPtr.Zero);
                }
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                // Another OpenSSL than libcrypto.so.3: the key is released, the engine stays as it is (a failed
                // HSM then needs a restart).
            }

            handle.Dispose();
            if (initialised)
            {
                // If no other key holds the engine, this is its last functional reference: libp11 frees its slots
                // and cached keys and finalizes the module (C_Finalize); the next open initializes it again.
                _ = EngineFinish(engine);
            }

            if (engine != IntPtr.Zero)
            {
                _ = EngineFree(engine);
            }
        }

        // The libcrypto .NET already loaded (OpenSSL 3). DllImport, not LibraryImport: the host is not compiled with
        // unsafe code.
        private const string LibCrypto = "libcrypto.so.3";

        [DllImport(LibCrypto, EntryPoint = "ENGINE_by_id", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern IntPtr EngineById([MarshalAs(UnmanagedType.LPUTF8Str)] string id);

        [DllImport(LibCrypto, EntryPoint = "ENGINE_init", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int EngineInit(IntPtr engine);

        [DllImport(LibCrypto, EntryPoint = "ENGINE_finish", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int EngineFinish(IntPtr engine);

        [DllImport(LibCrypto, EntryPoint = "ENGINE_free", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int EngineFree(IntPtr engine);

        [DllImport(LibCrypto, EntryPoint = "EVP_PKEY_set1_engine", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int EvpPkeySet1Engine(IntPtr pkey, IntPtr engine);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 5301, Level = LogLevel.Error, Message = "HSM key {Key} ({Uri}) failed to sign: {Reason}")]
        public static partial void SignFailed(ILogger logger, string key, string uri, string reason);

        [LoggerMessage(EventId = 5302, Level = LogLevel.Warning, Message = "HSM key {Key} ({Uri}) could not be reopened: {Reason}")]
        public static partial void ReopenFailed(ILogger logger, string key, string uri, string reason);

        [LoggerMessage(EventId = 5303, Level = LogLevel.Information, Message = "HSM key {Key} ({Uri}) reopened")]
        public static partial void Reopened(ILogger logger, string key, string uri);

        [LoggerMessage(EventId = 5304, Level = LogLevel.Critical, Message = "HSM key {Key} ({Uri}) reopened with a DIFFERENT public key; refusing to sign with it")]
        public static partial void ReopenedDifferentKey(ILogger logger, string key, string uri);
    }
}
