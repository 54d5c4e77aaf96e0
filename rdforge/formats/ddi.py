"""Discoverable Disk Images (UAPI group: Discoverable Partitions Specification and DDI):
a GPT with a data partition, its dm-verity hash partition and, when signed, a verity-sig
partition holding the root hash, the signing certificate's fingerprint and a PKCS#7
signature of the root hash.

Every identifier is derived from the content: the verity salt and superblock UUID from the
file system's hash, the data and verity partition UUIDs from the root hash (first and last
128 bits, as the specification says), the rest from the root hash too. The same file system
gives the same image, bit for bit."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rdforge.errors import FormatError
from rdforge.formats import gpt, verity
from rdforge.fsutil import write_atomic

# Partition types from the Discoverable Partitions Specification, per architecture:
# (root, root-verity, root-verity-sig, usr, usr-verity, usr-verity-sig).
TYPES: dict[str, tuple[str, str, str, str, str, str]] = {
    "x86-64": ("4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
               "41092b05-9fc8-4523-994f-2def0408b176", "8484680c-9521-48c6-9c11-b0720656f69e",
               "77ff5f63-e7b6-4633-acf4-1565b864c0e6", "e7bb33fb-06cf-4e81-8273-e543b413e2e2"),
    "arm64": ("b921b045-1df0-41c3-af44-4c6f280d3fae", "df3300ce-d69f-4c92-978c-9bfb0f38d820",
              "6db69de6-29f4-4758-a7a5-962190f00ce3", "b0e01050-ee5f-4390-949a-9101b17104e9",
              "6e11a4e7-fbca-4ded-b9e9-e1a512bb664e", "c23ce4ff-44bd-4b00-b2d4-b41b3419e02a"),
}
DEB_TO_DPS_ARCH = {"amd64": "x86-64", "arm64": "arm64"}
BLOCK = 4096


class Signer(Protocol):
    @property
    def fingerprint(self) -> str: ...

    def sign_detached(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class DdiResult:
    root_hash: str
    size: int
    partitions: list[dict[str, object]]
    signed: bool


def derived_uuid(seed: bytes, what: str) -> uuidlib.UUID:
    """A version-4-shaped UUID derived from seed (no randomness: reproducible)."""
    h = bytearray(hashlib.sha256(what.encode() + b"\0" + seed).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x40
    h[8] = (h[8] & 0x3F) | 0x80
    return uuidlib.UUID(bytes=bytes(h))


def signature_json(root_hash_hex: str, signer: Signer) -> bytes:
    """The verity-sig partition's content: JSON, NUL-padded to whole 4096-byte blocks."""
    sig = signer.sign_detached(root_hash_hex.encode())
    doc = {"rootHash": root_hash_hex, "certificateFingerprint": signer.fingerprint,
           "signature": base64.b64encode(sig).decode()}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return raw.ljust(-(-(len(raw) + 1) // BLOCK) * BLOCK, b"\0")


def make_ddi(fs_image: Path, out: Path, name: str, arch: str = "x86-64",
             signer: Signer | None = None, partition: str = "root") -> DdiResult:
    """Write a DDI to `out` holding the file system image `fs_image` in the root (or usr)
    partition with verity, and a verity-sig partition if a signer is given."""
    if arch not in TYPES:
        raise FormatError(f"no partition types known for architecture {arch!r}")
    if partition not in ("root", "usr"):
        raise FormatError(f"partition must be root or usr, not {partition!r}")
    types = TYPES[arch][:3] if partition == "root" else TYPES[arch][3:]
    data = fs_image.read_bytes()
    data += b"\0" * (-len(data) % BLOCK)
    fs_sha = hashlib.sha256(data).digest()
    params = verity.VerityParams(salt=hashlib.sha256(b"rdforge verity salt\0" + fs_sha).digest(),
                                 uuid=derived_uuid(fs_sha, "verity superblock"))
    hashdev = io.BytesIO()
    res = verity.format_hash_device(io.BytesIO(data), len(data), params, hashdev)
    root_hex = res.root_hash.hex()
    hash_bytes = hashdev.getvalue()
    hash_bytes += b"\0" * (-len(hash_bytes) % BLOCK)
    label = f"{partition}-{arch}"
    parts = [
        gpt.Partition(uuidlib.UUID(types[0]), uuidlib.UUID(bytes=res.root_hash[:16]),
                      name[:36], len(data), gpt.ATTR_READ_ONLY),
        gpt.Partition(uuidlib.UUID(types[1]), uuidlib.UUID(bytes=res.root_hash[-16:]),
                      f"{label}-verity"[:36], len(hash_bytes), gpt.ATTR_READ_ONLY),
    ]
    contents = [data, hash_bytes]
    if signer is not None:
        sig = signature_json(root_hex, signer)
        parts.append(gpt.Partition(uuidlib.UUID(types[2]), derived_uuid(res.root_hash, "verity-sig"),
                                   f"{label}-verity-sig"[:36], len(sig), gpt.ATTR_READ_ONLY))
        contents.append(sig)
    placed, total = gpt.layout(parts)
    buf = io.BytesIO()
    gpt.write_table(buf, placed, total, derived_uuid(res.root_hash, "disk"))
    for pl, content in zip(placed, contents, strict=True):
        buf.seek(pl.offset)
        buf.write(content)

    write_atomic(out, buf.getvalue())
    return DdiResult(root_hex, total, [
        {"name": pl.partition.name, "type": str(pl.partition.type_uuid),
         "uuid": str(pl.partition.uuid), "offset": pl.offset, "size": pl.partition.size}
        for pl in placed], signer is not None)


# type UUID -> its name as systemd-id128(1) shows it: root-x86-64-verity, ...
ROLES = {t: f"{base}-{arch}{suffix}" for arch, types in TYPES.items() for t, (base, suffix) in zip(
    types, [(b, x) for b in ("root", "usr") for x in ("", "-verity", "-verity-sig")], strict=True)}


def describe(data: bytes, what: str = "DDI") -> dict[str, object]:
    """A DDI's partitions (by their Discoverable Partitions role), the dm-verity root hash
    and parameters, and who signed it: what `systemd-dissect` shows of an image, read
    without mounting it. Whether the signature is good is the kernel's (or systemd's) to
    decide against its keyring; this names the signer."""
    from rdforge.formats import pe

    disk, entries = gpt.read_table(data, what)
    parts: list[dict[str, object]] = []
    info: dict[str, object] = {"disk_uuid": str(disk), "partitions": parts}
    for e in entries:
        role = ROLES.get(str(e.type_uuid), "other")
        parts.append({"role": role, "name": e.name, "type": str(e.type_uuid),
                      "uuid": str(e.uuid), "offset": e.offset, "size": e.size,
                      "read_only": bool(e.attributes & gpt.ATTR_READ_ONLY)})
        if e.offset + e.size > len(data):
            raise FormatError(f"{what}: partition {e.name!r} lies past the end of the image")
        body = data[e.offset:e.offset + e.size]
        if role.endswith("-verity-sig"):
            try:
                doc = json.loads(body.rstrip(b"\0").decode("utf-8"))
                info["root_hash"] = str(doc["rootHash"])
                info["certificate_fingerprint"] = str(doc.get("certificateFingerprint", ""))
                sig = base64.b64decode(str(doc["signature"]), validate=True)
            except (ValueError, KeyError, TypeError):
                raise FormatError(f"{what}: the verity-sig partition is not the specification's "
                                  "JSON (rootHash, signature)") from None
            info["signed_by"] = pe.pkcs7_signers(sig)
        elif role.endswith("-verity"):
            params, blocks = verity.parse_superblock(body[:512])
            info["verity"] = {"algorithm": params.algorithm, "data_blocks": blocks,
                              "data_block_size": params.data_block_size,
                              "hash_block_size": params.hash_block_size,
                              "salt": params.salt.hex()}
    data_roles = {f"{r}-{a}" for a in TYPES for r in ("root", "usr")}
    roots = [p for p in parts if str(p["role"]) in data_roles]
    if roots and "root_hash" in info:
        # The data partition's UUID is the root hash's first 128 bits (the DDI specification).
        info["uuid_matches_root_hash"] = (str(roots[0]["uuid"]).replace("-", "")
                                          == str(info["root_hash"])[:32])
    return info
