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
        RunAsync("consume", () => Inner.TryConsumeAsync(replayKey, replayExpiresAt, issued, cancel));

    public async ValueTask ReleaseAsync(string replayKey, string issuedJti, CancellationToken cancel) =>
        await RunAsync("release", async () =>
        {
            await Inner.ReleaseAsync(replayKey, issuedJti, cancel).ConfigureAwait(false);
            return true;
        }).ConfigureAwait(false);

    public async ValueTask RecordIssuedAsync(IssuedTokenRecord issued, CancellationToken cancel) =>
        await RunAsync("record_issued", async () =>
        {
            await Inner.RecordIssuedAsync(issued, cancel).ConfigureAwait(false);
            return true;
        }).ConfigureAwait(false);

    public ValueTask<IssuedTokenRecord?> GetIssuedAsync(string jti, CancellationToken cancel) =>
        RunAsync("get_issued", () => Inner.GetIssuedAsync(jti, cancel));

    public ValueTask<bool> RevokeAsync(string jti, DateTimeOffset revokedAt, CancellationToken cancel) =>
        RunAsync("revoke", () => Inner.RevokeAsync(jti, revokedAt, cancel));

    public ValueTask<BlockSet> GetBlocksAsync(CancellationToken cancel) =>
        RunAsync("get_blocks", () => Inner.GetBlocksAsync(cancel), traced: false);

    public ValueTask<long> AddBlockAsync(Block block, CancellationToken cancel) =>
        RunAsync("add_block", () => Inner.AddBlockAsync(block, cancel));

    public ValueTask<bool> RemoveBlockAsync(string id, CancellationToken cancel) =>
        RunAsync("remove_block", () => Inner.RemoveBlockAsync(id, cancel));

    public ValueTask<KeyRotationSet> GetKeyRotationsAsync(CancellationToken cancel) =>
        RunAsync("get_key_rotations", () => Inner.GetKeyRotationsAsync(cancel), traced: false);

    public ValueTask<long?> TryAddKeyRotationAsync(long expectedVersion, KeyRotation rotation, CancellationToken cancel) =>
        RunAsync("add_key_rotation", () => Inner.TryAddKeyRotationAsync(expectedVersion, rotation, cancel));

    public ValueTask<bool> PingAsync(CancellationToken cancel) =>
        RunAsync("ping", () => Inner.PingAsync(cancel), traced: false);

    /// <summary>Background reads (block sync every second, readiness pings) are counted on failure but not traced.</summary>
    private async ValueTask<T> RunAsync<T>(string operation, Func<ValueTask<T>> call, bool traced = true)
    {
        using var activity = traced ? BrokerTracing.Source.StartActivity("state") : null;
        activity?.SetTag("tokenbroker.state.operation", operation);
        try
        {
            return await call().ConfigureAwait(false);
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
