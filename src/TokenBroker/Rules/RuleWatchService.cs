using System.Runtime.InteropServices;
using TokenBroker.Configuration;

namespace TokenBroker.Rules;

/// <summary>
/// Triggers rule reloads: on changes to the configured rule files (debounced, so an editor's or git's burst of
/// writes gives one reload) and on SIGHUP. The built-in sample rules never change, so nothing is watched for them.
/// </summary>
internal sealed class RuleWatchService(RuleReloader reloader, ResolvedSettings settings, TimeProvider time) : IHostedService, IDisposable
{
    private readonly List<FileSystemWatcher> _watchers = [];
    private PosixSignalRegistration? _sighup;
    private ITimer? _debounce;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!OperatingSystem.IsWindows())
        {
            _sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
            {
                context.Cancel = true; // SIGHUP means "reload", not "terminate"
                reloader.Reload("SIGHUP");
            });
        }

        if (!settings.RulesWatch || settings.RulePaths.Count == 0)
        {
            return Task.CompletedTask;
        }

        _debounce = time.CreateTimer(_ => reloader.Reload("file change"), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        foreach (var path in settings.RulePaths)
        {
            var full = Path.GetFullPath(path);
            var isDirectory = Directory.Exists(full);
            var directory = isDirectory ? full : Path.GetDirectoryName(full);
            if (directory is null || !Directory.Exists(directory))
            {
                continue;
            }

            var watcher = new FileSystemWatcher(directory)
            {
                Filter = isDirectory ? "*" : Path.GetFileName(full),
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime,
                IncludeSubdirectories = false,
            };
            watcher.Changed += OnChange;
            watcher.Created += OnChange;
            watcher.Deleted += OnChange;
            watcher.Renamed += OnChange;
            watcher.EnableRaisingEvents = true;
            _watchers.Add(watcher);
        }

        return Task.CompletedTask;
    }

    private void OnChange(object sender, FileSystemEventArgs e)
    {
        if (e.Name is { } name && !(name.EndsWith(".yaml", StringComparison.Ordinal) || name.EndsWith(".yml", StringComparison.Ordinal)) &&
            ((FileSystemWatcher)sender).Filter == "*")
        {
            return; // editors' swap and backup files in a rules directory
        }

        _debounce?.Change(settings.RulesReloadDebounce, Timeout.InfiniteTimeSpan);
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        foreach (var watcher in _watchers)
        {
            watcher.Dispose();
        }

        _watchers.Clear();
        _sighup?.Dispose();
        _sighup = null;
        _debounce?.Dispose();
        _debounce = null;
    }
}
