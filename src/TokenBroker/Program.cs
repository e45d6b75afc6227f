using TokenBroker.Cli;

// tokenbroker [serve] | demo — the CLI only wires; each verb lives in Cli/.
return await BrokerCli.RunAsync(args).ConfigureAwait(false);

/// <summary>The entry point, visible to <c>WebApplicationFactory</c>-style tests.</summary>
public partial class Program;
