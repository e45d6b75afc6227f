namespace TokenBroker.Tests; internal static class Placeholder {}
