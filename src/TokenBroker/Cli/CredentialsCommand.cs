using System.CommandLine;
using TokenBroker.Security;

namespace TokenBroker.Cli;

/// <summary>
/// <c>tokenbroker credentials create --name NAME</c>: makes an admin or introspection credential. Prints the secret
/// once (give it to the caller) and the hash line (put it in <c>TokenBroker:Admin:Credentials</c> or
/// <c>TokenBroker:Introspection:Credentials</c>). The broker never stores the secret.
/// </summary>
internal static class CredentialsCommand
{
    public static Command Build()
    {
        var name = new Option<string>("--name") { Description = "The credential name (1 to 64 characters of A-Z a-z 0-9 . _ -), shown in audit events.", Required = true };
        var create = new Command("create", "Create a credential: prints the secret once and the hash line for the configuration.") { name };
        create.SetAction(parse => Create(parse.GetValue(name)!, Console.Out, Console.Error));
        return new Command("credentials", "Admin and introspection API credentials.") { create };
    }

    internal static int Create(string name, TextWriter output, TextWriter error)
    {
        if (!CredentialHash.IsValidName(name))
        {
            error.WriteLine("tokenbroker credentials create: --name must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
            return BrokerCli.Usage;
        }

        var (secret, line) = CredentialHash.Create(name);
        output.WriteLine($"secret (give it to the caller; it is shown only now): {secret}");
        output.WriteLine($"hash line (configure it, e.g. TokenBroker__Admin__Credentials__0): {line}");
        return BrokerCli.Ok;
    }
}
