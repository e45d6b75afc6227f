using TokenBroker.Rules.Loading;

namespace TokenBroker.Rules.Tests.Loading;

[TestFixture]
public sealed class RuleSourceTests
{
    private string _directory = null!;

    [SetUp]
    public void CreateDirectory()
    {
        _directory = Path.Combine(Path.GetTempPath(), "tb-rules-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_directory);
    }

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_directory, recursive: true);

    [Test]
    public void FromPaths_WithDirectory_ReadsYamlAndYmlFilesInOrdinalNameOrder()
    {
        File.WriteAllText(Path.Combine(_directory, "b.yaml"), "b");
        File.WriteAllText(Path.Combine(_directory, "a.yml"), "a");
        File.WriteAllText(Path.Combine(_directory, "B.yaml"), "B");
        File.WriteAllText(Path.Combine(_directory, "notes.txt"), "ignored");
        File.WriteAllText(Path.Combine(_directory, "c.YAML"), "ignored");
        Directory.CreateDirectory(Path.Combine(_directory, "sub.yaml"));
        var errors = new List<string>();

        var sources = RuleSource.FromPaths([_directory], errors);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(errors, Is.Empty);
            Assert.That(sources.Select(s => Path.GetFileName(s.Name)), Is.EqualTo(new[] { "B.yaml", "a.yml", "b.yaml" }));
            Assert.That(sources.Select(s => s.Text), Is.EqualTo(new[] { "B", "a", "b" }));
        }
    }

    [Test]
    public void FromPaths_WithMissingFileAndEmptyDirectory_ReportsBothAndReadsTheRest()
    {
        var empty = Path.Combine(_directory, "empty");
        Directory.CreateDirectory(empty);
        var file = Path.Combine(_directory, "rules.yaml");
        File.WriteAllText(file, "rules: []");
        var missing = Path.Combine(_directory, "missing.yaml");
        var errors = new List<string>();

        var sources = RuleSource.FromPaths([missing, empty, file], errors);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(sources.Select(s => s.Name), Is.EqualTo(new[] { file }));
            Assert.That(errors, Has.Count.EqualTo(2));
            Assert.That(errors, Has.One.StartsWith(missing + ":"));
            Assert.That(errors, Has.One.StartsWith(empty + ":"));
        }
    }

    [Test]
    public void FromPaths_WithFileAboveMaxLength_ReportsItWithoutReading()
    {
        var file = Path.Combine(_directory, "huge.yaml");
        File.WriteAllText(file, new string('#', RuleSource.MaxLength + 1));
        var errors = new List<string>();

        var sources = RuleSource.FromPaths([file], errors);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(sources, Is.Empty);
            Assert.That(errors, Has.One.StartsWith(file + ":"));
        }
    }
}
