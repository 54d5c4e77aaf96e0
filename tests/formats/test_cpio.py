import io
import stat
import subprocess
from pathlib import Path

from rdforge.formats import cpio


def _entries() -> list[cpio.CpioEntry]:
    return [
        cpio.CpioEntry("dev", stat.S_IFDIR | 0o755, mtime=5),
        cpio.CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1), mtime=5),
        cpio.CpioEntry("etc", stat.S_IFDIR | 0o755, mtime=5),
        cpio.CpioEntry("etc/a", stat.S_IFREG | 0o644, data=b"hello\n", mtime=5, ino_key=1),
        cpio.CpioEntry("etc/b", stat.S_IFREG | 0o644, data=b"hello\n", mtime=5, ino_key=1),
        cpio.CpioEntry("etc/odd", stat.S_IFREG | 0o600, data=b"x" * 7, mtime=5),
        cpio.CpioEntry("link", stat.S_IFLNK | 0o777, data=b"etc/a", mtime=5),
    ]


def test_gnu_cpio_lists_and_extracts_our_archive(tmp_path: Path) -> None:
    bio = io.BytesIO()
    cpio.write(bio, _entries())
    raw = bio.getvalue()
    assert len(raw) % 512 == 0
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=raw, capture_output=True, check=True)
    assert listing.stdout.decode().split() == ["dev", "dev/console", "etc", "etc/a", "etc/b",
                                               "etc/odd", "link"]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-i", "-d", "--quiet", "--no-absolute-filenames"], input=raw,
                   cwd=out, check=True, capture_output=True)
    assert (out / "etc/a").read_bytes() == b"hello\n"
    assert (out / "etc/b").read_bytes() == b"hello\n"
    assert (out / "etc/a").stat().st_ino == (out / "etc/b").stat().st_ino
    assert (out / "etc/odd").read_bytes() == b"xxxxxxx"
    assert (out / "link").readlink() == Path("etc/a")
    assert stat.S_ISCHR((out / "dev/console").lstat().st_mode)


def test_read_round_trip_and_determinism() -> None:
    a, b = io.BytesIO(), io.BytesIO()
    cpio.write(a, _entries())
    cpio.write(b, _entries())
    assert a.getvalue() == b.getvalue()
    entries, end = cpio.read(a.getvalue())
    assert [e.name for e in entries] == [e.name for e in _entries()]
    assert entries[4].data == b"hello\n"  # a hard link reads back with its content
    assert end <= len(a.getvalue())


def test_reads_what_gnu_cpio_writes(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/f").write_bytes(b"abc")
    raw = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=b"d\nd/f\n",
                         cwd=tmp_path, capture_output=True, check=True).stdout
    entries, _ = cpio.read(raw)
    assert [(e.name, e.data) for e in entries] == [("d", b""), ("d/f", b"abc")]


def test_segments_splits_concatenated_archives() -> None:
    a = io.BytesIO()
    cpio.write(a, _entries()[:2])
    b = io.BytesIO()
    cpio.write(b, _entries()[2:4])
    parts = list(cpio.segments(a.getvalue() + b.getvalue()))
    assert [off for off, _ in parts] == [0, len(a.getvalue())]


def test_a_time_past_2106_is_refused_not_written_corrupt() -> None:
    import pytest

    from rdforge.errors import FormatError

    with pytest.raises(FormatError, match="8 hex digits"):
        cpio.write(io.BytesIO(), [cpio.CpioEntry("x", stat.S_IFREG | 0o644, mtime=2**33)])
    out = io.BytesIO()
    cpio.write(out, [cpio.CpioEntry("x", stat.S_IFREG | 0o644, mtime=2**32 - 1)])
    assert cpio.read(out.getvalue())[0][0].mtime == 2**32 - 1
