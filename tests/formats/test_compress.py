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
