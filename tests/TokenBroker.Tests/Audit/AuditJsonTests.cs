using System.Text.Json;
using TokenBroker.Audit;

namespace TokenBroker.Tests.Audit;

[TestFixture]
public sealed class AuditJsonTests
{
    [Test]
    public void Explanation_IsWrittenAsANestedJsonObject_UnderSnakeCaseName()
    {
        using var explanation = JsonDocument.Parse("""{"dry_run":false,"decision":{"outcome":"refused","error_id":"TB1201"}}""");
        var audit = new AuditEvent { Type = "exchange", RequestId = "req_x", Time = DateTimeOffset.UnixEpoch, Explanation = explanation.RootElement.Clone() };

        var line = JsonSerializer.Serialize(audit, AuditJsonContext.Default.AuditEvent);

        using var parsed = JsonDocument.Parse(line);
        Assert.That(line, Does.Not.Contain("\n"), "one audit event per line");
        Assert.That(parsed.RootElement.GetProperty("explanation").GetProperty("decision").GetProperty("error_id").GetString(), Is.EqualTo("TB1201"));
    }

    [Test]
    public void GrantedEvents_HaveNoExplanationMember()
    {
        var audit = new AuditEvent { Type = "exchange", RequestId = "req_x", Time = DateTimeOffset.UnixEpoch, Outcome = "issued" };

        var line = JsonSerializer.Serialize(audit, AuditJsonContext.Default.AuditEvent);

        Assert.That(line, Does.Not.Contain("explanation"));
    }
}
