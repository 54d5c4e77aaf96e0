from pathlib import Path

from rdforge.sources.aptconf import map_to_release, read_host_sources


def test_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    apt = tmp_path / "etc/apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
        "deb-src http://mirror.example/debian bookworm main\n")
    (apt / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://a.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\nEnabled: no\n")
    (apt / "sources.list.d/other.sources").write_text(
        "Types: deb\nURIs: https://vendor.example/repo\nSuites: nodistro\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/vendor.gpg\n")
    srcs = read_host_sources(tmp_path)
    assert [(s.uri, s.suites) for s in srcs] == [
        ("http://mirror.example/debian", ("bookworm",)),
        ("http://a.example/debian", ("bookworm", "bookworm-updates")),
        ("https://vendor.example/repo", ("nodistro",))]
    assert srcs[0].keyring == Path("/k.gpg")
    mapped = map_to_release(srcs, "trixie")
    assert [(s.uri, s.suites) for s in mapped] == [
        ("http://a.example/debian", ("trixie", "trixie-updates"))]
