using System.Diagnostics;
using TokenBroker.Hosting;

namespace TokenBroker.State;

/// <summary>
/// Wraps the configured state store: a <c>state</c> activity per call and <c>tokenbroker.state.errors</c> (by
/// operation) for every call that fails. Behaviour is unchanged; exceptions pass through.
/// </summary>
internal sealed class InstrumentedStateStore(IStateStore inner, BrokerMetrics metrics) : IStateStore, IDisposable, IAsyncDisposable
{
    public IStateStore Inner { get; } = inner;

    public event Action? BlocksChanged
    {
        add => Inner.BlocksChanged += value;
        remove => Inner.BlocksChanged -= value;
    }

    public event Action? KeyRotationsChanged
    {
        add => Inner.KeyRotationsChanged += value;
        remove => Inner.KeyRotationsChanged -= value;
    }

    public ValueTask<bool> TryConsumeAsync(string replayKey, DateTimeOffset replayExpiresAt, IssuedTokenRecord issued, CancellationToken cancel) =>
        RunAsync("consume", (replayKey, replayExpiresAt, issued, cancel), static (s, a) => s.TryConsumeAsync(a.replayKey, a.replayExpiresAt, a.issued, a.cancel));

    public async ValueTask ReleaseAsync(string replayKey, string issuedJti, CancellationToken cancel) =>
        await RunAsync("release", (replayKey, issuedJti, cancel), static async (s, a) =>
        {
            await s.ReleaseAsync(a.replayKey, a.issuedJti, a.cancel).ConfigureAwait(false);
            return true;
        }).ConfigureAwait(false);

    public async ValueTask RecordIssuedAsync(IssuedTokenRecord issued, CancellationToken cancel) =>
        await RunAsync("record_issued", (issued, cancel), static async (s, a) =>
        {
            await s.RecordIssuedAsync(a.issued, a.cancel).ConfigureAwait(false);
            return true;
        }).ConfigureAwait(false);

    public ValueTask<IssuedTokenRecord?> GetIssuedAsync(string jti, CancellationToken cancel) =>
        RunAsync("get_issued", (jti, cancel), static (s, a) => s.GetIssuedAsync(a.jti, a.cancel));

    public ValueTask<bool> RevokeAsync(string jti, DateTimeOffset revokedAt, CancellationToken cancel) =>
        RunAsync("revoke", (jti, revokedAt, cancel), static (s, a) => s.RevokeAsync(a.jti, a.revokedAt, a.cancel));

    public ValueTask<BlockSet> GetBlocksAsync(CancellationToken cancel) =>
        RunAsync("get_blocks", cancel, static (s, c) => s.GetBlocksAsync(c), traced: false);

    public ValueTask<long> AddBlockAsync(Block block, CancellationToken cancel) =>
        RunAsync("add_block", (block, cancel), static (s, a) => s.AddBlockAsync(a.block, a.cancel));

    public ValueTask<bool> RemoveBlockAsync(string id, CancellationToken cancel) =>
        RunAsync("remove_block", (id, cancel), static (s, a) => s.RemoveBlockAsync(a.id, a.cancel));

    public ValueTask<KeyRotationSet> GetKeyRotationsAsync(CancellationToken cancel) =>
        RunAsync("get_key_rotations", cancel, static (s, c) => s.GetKeyRotationsAsync(c), traced: false);

    public ValueTask<long?> TryAddKeyRotationAsync(long expectedVersion, KeyRotation rotation, CancellationToken cancel) =>
        RunAsync("add_key_rotation", (expectedVersion, rotation, cancel), static (s, a) => s.TryAddKeyRotationAsync(a.expectedVersion, a.rotation, a.cancel));

    public ValueTask<bool> PingAsync(CancellationToken cancel) =>
        RunAsync("ping", cancel, static (s, c) => s.PingAsync(c), traced: false);

    /// <summary>
    /// Background reads (block sync every second, readiness pings) are counted on failure but not traced. The call is
    /// a static lambda with its arguments passed as state, so the exchange path allocates no closure per store call.
    /// </summary>
    private async ValueTask<T> RunAsync<TState, T>(string operation, TState state, Func<IStateStore, TState, ValueTask<T>> call, bool traced = true)
    {
        using var activity = traced ? BrokerTracing.Source.StartActivity("state") : null;
        activity?.SetTag("tokenbroker.state.operation", operation);
        try
        {
            return await call(Inner, state).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            metrics.StateError(operation);
            activity?.SetStatus(ActivityStatusCode.Error, e.GetType().Name);
            throw;
        }
    }

    public void Dispose() => (Inner as IDisposable)?.Dispose();

    public ValueTask DisposeAsync() => Inner is IAsyncDisposable d ? d.DisposeAsync() : ValueTask.CompletedTask;
}
