using TokenBroker.Tests.Infrastructure;

/// <summary>Removes the shared SoftHSM token directory after all tests (outside any namespace: it covers the assembly).</summary>
#pragma warning disable CA1050 // NUnit: a SetUpFixture outside every namespace runs once for the whole assembly.
[SetUpFixture]
public sealed class SoftHsmCleanup
{
    [OneTimeTearDown]
    public void DeleteTokens() => SoftHsm.DeleteIfCreated();
}
#pragma warning restore CA1050
