namespace TokenBroker.Rules.Tests; internal static class Placeholder {}
