"""Our dm-verity hash device and GPT writer against the reference tools (veritysetup, sfdisk,
sgdisk), and the DDI assembled from them."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from rdforge.formats import ddi, gpt, verity
from rdforge.keys import genkey, load_signing_key

SALT = bytes(range(32))
UUID = uuid.UUID("12345678-1234-4234-9234-123456789abc")


@pytest.mark.parametrize("blocks", [1, 2, 127, 128, 129, 300, 16385])
def test_hash_device_is_byte_identical_to_veritysetup(tmp_path: Path, blocks: int) -> None:
    data = os.urandom(blocks * 4096)
    (tmp_path / "data").write_bytes(data)
    r = subprocess.run(["veritysetup", "format", str(tmp_path / "data"), str(tmp_path / "hash"),
                        "--salt", SALT.hex(), "--uuid", str(UUID)],
                       capture_output=True, text=True, check=True)
    ref_root = next(line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
                    if line.startswith("Root hash"))
    out = io.BytesIO()
    res = verity.format_hash_device(io.BytesIO(data), len(data), verity.VerityParams(SALT, UUID), out)
    assert res.root_hash.hex() == ref_root
    assert out.getvalue() == (tmp_path / "hash").read_bytes()
    params, nblocks = verity.parse_superblock(out.getvalue())
    assert (params.salt, params.uuid, nblocks) == (SALT, UUID, blocks)


def test_veritysetup_verifies_our_tree_and_catches_a_flipped_byte(tmp_path: Path) -> None:
    data = bytearray(os.urandom(50 * 4096))
    out = io.BytesIO()
    res = verity.format_hash_device(io.BytesIO(bytes(data)), len(data),
                                    verity.VerityParams(SALT, UUID), out)
    (tmp_path / "hash").write_bytes(out.getvalue())
    (tmp_path / "data").write_bytes(data)
    ok = subprocess.run(["veritysetup", "verify", str(tmp_path / "data"), str(tmp_path / "hash"),
                         res.root_hash.hex()], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    data[4096 * 33 + 7] ^= 1
    (tmp_path / "data").write_bytes(data)
    bad = subprocess.run(["veritysetup", "verify", str(tmp_path / "data"), str(tmp_path / "hash"),
                          res.root_hash.hex()], capture_output=True, text=True)
    assert bad.returncode != 0


def test_gpt_is_read_back_by_sfdisk_and_verified_by_sgdisk(tmp_path: Path) -> None:
    parts = [gpt.Partition(uuid.UUID(ddi.TYPES["x86-64"][0]), uuid.uuid4(), "data", 300 * 4096,
                           gpt.ATTR_READ_ONLY),
             gpt.Partition(uuid.UUID(ddi.TYPES["x86-64"][1]), uuid.uuid4(), "hash", 5 * 4096)]
    placed, total = gpt.layout(parts)
    disk = tmp_path / "disk.img"
    disk_id = uuid.uuid4()
    with open(disk, "wb") as f:
        gpt.write_table(f, placed, total, disk_id)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert table["label"] == "gpt" and table["id"].lower() == str(disk_id)
    for pl, got in zip(placed, table["partitions"], strict=True):
        assert got["type"].lower() == str(pl.partition.type_uuid)
        assert got["uuid"].lower() == str(pl.partition.uuid)
        assert got["name"] == pl.partition.name
        assert (got["start"], got["size"]) == (pl.first_lba, pl.partition.size // 512)
        assert got["start"] * 512 % 4096 == 0
    assert table["partitions"][0]["attrs"] == "GUID:60"
    v = subprocess.run(["sgdisk", "-v", str(disk)], capture_output=True, text=True)
    assert v.returncode == 0 and "No problems found" in v.stdout, v.stdout + v.stderr


def test_signed_ddi_layout_verity_and_signature(tmp_path: Path) -> None:
    fs = tmp_path / "fs.img"
    fs.write_bytes(os.urandom(40 * 4096 + 100))  # not block aligned: padded
    key, cert = genkey("Test Vendor", tmp_path / "keys")
    signer = load_signing_key(key, cert)
    out = tmp_path / "x.raw"
    res = ddi.make_ddi(fs, out, "x", "x86-64", signer)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(out)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]["partitions"]
    types = [p["type"].lower() for p in table]
    assert types == list(ddi.TYPES["x86-64"][:3])
    # Partition UUIDs: first and last 128 bits of the root hash.
    assert table[0]["uuid"].lower() == str(uuid.UUID(res.root_hash[:32]))
    assert table[1]["uuid"].lower() == str(uuid.UUID(res.root_hash[32:]))
    raw = out.read_bytes()

    def part(i: int) -> bytes:
        return raw[table[i]["start"] * 512:(table[i]["start"] + table[i]["size"]) * 512]

    (tmp_path / "d").write_bytes(part(0))
    (tmp_path / "h").write_bytes(part(1))
    r = subprocess.run(["veritysetup", "verify", str(tmp_path / "d"), str(tmp_path / "h"),
                        res.root_hash], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(part(2).rstrip(b"\0"))
    assert doc["rootHash"] == res.root_hash
    assert doc["certificateFingerprint"] == signer.fingerprint
    (tmp_path / "sig").write_bytes(base64.b64decode(doc["signature"]))
    (tmp_path / "content").write_text(res.root_hash)
    v = subprocess.run(["openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in",
                        str(tmp_path / "sig"), "-content", str(tmp_path / "content"), "-CAfile",
                        str(cert), "-purpose", "any", "-out", os.devnull],
                       capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    # Same input, same bytes (signature included: RSA PKCS#1 v1.5 without signed attributes).
    ddi.make_ddi(fs, tmp_path / "y.raw", "x", "x86-64", signer)
    assert (tmp_path / "y.raw").read_bytes() == raw


def test_inspect_reads_a_signed_ddi_as_sfdisk_and_veritysetup_do(tmp_path: Path) -> None:
    """`rdforge inspect` of a sysext: its partitions as sfdisk reads them, its verity
    parameters as `veritysetup dump` reads them, its signer, and the files of its erofs (made
    by mkfs.erofs from a directory) as that directory holds them."""
    from rdforge.outputs.inspect import inspect_image, list_entries, read_tree

    src = tmp_path / "src"
    (src / "usr/lib/extension-release.d").mkdir(parents=True)
    (src / "usr/lib/extension-release.d/extension-release.tools").write_text(
        "ID=debian\nVERSION_ID=13\nSYSEXT_SCOPE=initrd\n")
    (src / "usr/bin").mkdir()
    (src / "usr/bin/tool").write_bytes(os.urandom(70000))
    (src / "usr/bin/tool").chmod(0o755)
    (src / "usr/bin/alias").symlink_to("tool")
    fs = tmp_path / "fs.img"
    subprocess.run(["mkfs.erofs", "--quiet", "-zlz4hc", "--all-root", str(fs), str(src)],
                   check=True)
    with open(fs, "ab") as f:  # whole 4 KiB blocks for verity
        f.write(b"\0" * (-fs.stat().st_size % 4096))
    key, cert = genkey("Test Vendor", tmp_path / "keys")
    out = tmp_path / "tools.raw"
    res = ddi.make_ddi(fs, out, "tools", "x86-64", load_signing_key(key, cert))
    info = inspect_image(out)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(out)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert info["disk_uuid"] == table["id"].lower()
    parts = info["partitions"]
    assert isinstance(parts, list)
    assert [(p["uuid"], p["name"], p["offset"] // 512, p["size"] // 512) for p in parts] == [
        (t["uuid"].lower(), t["name"], t["start"], t["size"]) for t in table["partitions"]]
    assert [p["role"] for p in parts] == ["root-x86-64", "root-x86-64-verity",
                                          "root-x86-64-verity-sig"]
    assert info["root_hash"] == res.root_hash and info["uuid_matches_root_hash"] is True
    assert info["signed_by"] == ["CN=Test Vendor"]
    raw = out.read_bytes()
    hashpart = tmp_path / "h"
    hashpart.write_bytes(raw[parts[1]["offset"]:parts[1]["offset"] + parts[1]["size"]])
    dump = subprocess.run(["veritysetup", "dump", str(hashpart)], capture_output=True,
                          text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in dump.splitlines() if ":" in line)
    v = info["verity"]
    assert isinstance(v, dict)
    assert fields["Hash algorithm"].strip() == v["algorithm"]
    assert int(fields["Data blocks"]) == v["data_blocks"] == fs.stat().st_size // 4096
    assert fields["Salt"].strip() == v["salt"]
    assert info["verity_checked"] is True
    assert info["extension_release"] == {
        "path": "/usr/lib/extension-release.d/extension-release.tools", "ID": "debian",
        "VERSION_ID": "13", "SYSEXT_SCOPE": "initrd"}
    rows = {r["path"]: r for r in list_entries(read_tree(out))}
    assert set(rows) == {"/" + str(p.relative_to(src)) for p in src.rglob("*")}
    assert (rows["/usr/bin/tool"]["mode"], rows["/usr/bin/tool"]["size"]) == ("0755", 70000)
    assert rows["/usr/bin/alias"]["target"] == "tool"
    assert read_tree(out).get("usr/bin/alias").data == (src / "usr/bin/tool").read_bytes()  # type: ignore[union-attr]
    # Data that no longer matches the signed root hash is refused, not read.
    altered = bytearray(raw)
    altered[parts[0]["offset"] + 5000] ^= 1
    (tmp_path / "altered.raw").write_bytes(bytes(altered))
    with pytest.raises(Exception, match="does not match its signed root hash"):
        read_tree(tmp_path / "altered.raw")
    # A damaged table is one clear error, not a wrong answer.
    bad = bytearray(raw)
    bad[1024 + 40] ^= 1  # inside the first partition entry
    (tmp_path / "bad.raw").write_bytes(bytes(bad))
    with pytest.raises(Exception, match="GPT entry array checksum mismatch"):
        inspect_image(tmp_path / "bad.raw")
