using TokenBroker.Hosting;

namespace TokenBroker.Audit;

/// <summary>
/// The <see cref="IAuditSink"/> the endpoints use: counts the event in the broker's metrics (so every audited
/// decision is also a metric, with the same outcome and error id) and hands it to the configured sink.
/// </summary>
internal sealed class AuditDispatcher(IAuditSink sink, BrokerMetrics metrics) : IAuditSink
{
    public void Write(AuditEvent auditEvent)
    {
        metrics.Record(auditEvent);
        sink.Write(auditEvent);
    }
}
