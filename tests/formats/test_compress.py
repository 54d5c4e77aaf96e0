import subprocess

import pytest

from rdforge.formats import compress

DATA = b"".join(b"line %d of some initrd content\n" % i for i in range(20000))


@pytest.mark.parametrize("algo,tool", [("zstd", ["zstd", "-dc"]), ("xz", ["xz", "-dc"]),
                                       ("gzip", ["gzip", "-dc"]), ("lz4", ["lz4", "-dc"])])
def test_command_line_tools_decompress(algo: str, tool: list[str]) -> None:
    blob = compress.compress_stream(DATA, algo)
    assert compress.detect(blob) == algo
    out = subprocess.run(tool, input=blob, capture_output=True, check=True).stdout
    assert out == DATA
    assert compress.decompress(blob) == DATA


def test_xz_uses_crc32_the_kernel_can_check() -> None:
    blob = compress.compress_stream(DATA, "xz")
    info = subprocess.run(["xz", "--robot", "--list", "-"], input=blob, capture_output=True)
    if info.returncode != 0:  # older xz cannot list stdin; fall back to the stream flags byte
        assert blob[7] == 0x01
    else:
        assert "CRC32" in info.stdout.decode()


def test_deterministic() -> None:
    for algo in compress.ALGORITHMS:
        assert compress.compress_stream(DATA, algo) == compress.compress_stream(DATA, algo)


def test_lz4_blocks_of_8_mib_in_the_legacy_frame() -> None:
    big = DATA * 60  # over one 8 MiB block
    blob = compress.compress_stream(big, "lz4")
    assert blob[:4] == compress.LZ4_LEGACY_MAGIC
    out = subprocess.run(["lz4", "-dc"], input=blob, capture_output=True, check=True).stdout
    assert out == big and compress.decompress(blob) == big


def test_zstd_bytes_do_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """zstd compresses with every core, and a build on a machine with more cores must still
    give the same image: the output may not depend on the number of threads."""
    import random

    rnd = random.Random(7)
    # Several MiB of mixed content, so that zstd splits it into more than one job.
    big = b"".join(DATA[rnd.randrange(0, 10000):][:rnd.randrange(100, 60000)]
                   + rnd.randbytes(rnd.randrange(0, 2000)) for _ in range(600))
    out = {}
    for n in (1, 2, 3):
        monkeypatch.setattr(compress, "zstd_threads", lambda n=n: n)
        out[n] = compress.compress_stream(big, "zstd")
    assert out[1] == out[2] == out[3]
    assert compress.decompress(out[1]) == big
