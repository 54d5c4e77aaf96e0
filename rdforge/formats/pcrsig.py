"""PCR 11 of a Unified Kernel Image: the values it will hold at each boot phase, and the signed
PCR policies (the `.pcrsig` section) that let a TPM-sealed secret be bound to "any UKI signed by
this key" instead of to one image's hashes.

What the values are (systemd-stub(7), systemd-pcrphase.service(8), systemd-measure(1)):
- PCR 11 starts at zero. systemd-stub extends it, for each section of the UKI present, in the
  stub's fixed order (not the order in the file), first with the section's name and its
  terminating NUL, then with the section's content. `.pcrsig` is not measured: it is what
  is computed from the rest.
- Then systemd-pcrphase extends it with a word at each boot phase, without NUL: `enter-initrd`
  in the initrd, `leave-initrd` before switching root, `sysinit` and `ready` in the system.
A PCR extend is PCR := H(PCR || H(data)), for each bank's hash H.

For each bank and each phase path, the signed policy is the digest of a SHA-256 policy session
that ran TPM2_PolicyPCR on PCR 11 with the predicted value, signed RSASSA-PKCS1-v1_5 with
the bank's hash; `pkfp` is the SHA-256 of the public key in PKCS#1 DER form. The JSON is laid out the
way systemd-measure prints it and ukify embeds it. RSA PKCS#1 v1.5 signatures are
deterministic, so the same inputs and key give the same bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from rdforge.errors import FormatError
from rdforge.formats import tpm2
from rdforge.formats.pe import PE

PCR = 11
# The order in which systemd-stub measures sections (its `unified_sections` table); .pcrsig
# sits between .sbat and .pcrpkey there but is never measured.
MEASURED_ORDER = (".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb",
                  ".uname", ".sbat", ".pcrpkey")
# Banks as systemd-measure signs them when none is named: the hash, its TPM algorithm id, and
# the same hash for the signature over the policy digest.
BANKS: dict[str, tuple[Callable[[bytes], hashlib._Hash], int, hashes.HashAlgorithm]] = {
    "sha1": (hashlib.sha1, 0x0004, hashes.SHA1()), "sha256": (hashlib.sha256, 0x000B, hashes.SHA256()),
    "sha384": (hashlib.sha384, 0x000C, hashes.SHA384()),
    "sha512": (hashlib.sha512, 0x000D, hashes.SHA512())}
PHASE_PATHS = ("enter-initrd", "enter-initrd:leave-initrd", "enter-initrd:leave-initrd:sysinit",
               "enter-initrd:leave-initrd:sysinit:ready")


def _extend(pcr: bytes, data: bytes, h: Callable[[bytes], hashlib._Hash]) -> bytes:
    return h(pcr + h(data).digest()).digest()


def predict(sections: Mapping[str, bytes], bank: str = "sha256",
            phase_paths: tuple[str, ...] = PHASE_PATHS) -> dict[str, bytes]:
    """PCR 11's value in one bank after systemd-stub measured these sections and each phase
    path ran, by phase path."""
    unknown = set(sections) - set(MEASURED_ORDER)
    if unknown:
        raise FormatError(f"sections systemd-stub would not measure this way: {sorted(unknown)}")
    h = BANKS[bank][0]
    pcr = bytes(h(b"").digest_size)
    for name in MEASURED_ORDER:
        if name in sections:
            pcr = _extend(_extend(pcr, name.encode() + b"\0", h), sections[name], h)
    values = {}
    for path in phase_paths:
        value = pcr
        for word in path.split(":"):
            value = _extend(value, word.encode(), h)
        values[path] = value
    return values


def measured_sections(image: bytes) -> dict[str, bytes]:
    """The sections of a UKI that systemd-stub measures into PCR 11, by name."""
    return {s.name: s.data(image) for s in PE.parse(image).sections if s.name in MEASURED_ORDER}


def public_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The `.pcrpkey` section: the public key, PEM SubjectPublicKeyInfo."""
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def sign(sections: Mapping[str, bytes], key: rsa.RSAPrivateKey,
         banks: tuple[str, ...] = tuple(BANKS), phase_paths: tuple[str, ...] = PHASE_PATHS) -> bytes:
    """The `.pcrsig` section for a UKI with these (measured) sections."""
    pkfp = hashlib.sha256(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1)).hexdigest()
    out: dict[str, list[dict[str, object]]] = {}
    for bank in banks:
        entries = out.setdefault(bank, [])
        for value in predict(sections, bank, phase_paths).values():
            pol = tpm2.policy_pcr({PCR: value}, BANKS[bank][1])
            sig = key.sign(pol, padding.PKCS1v15(), BANKS[bank][2])
            entries.append({"pcrs": [PCR], "pkfp": pkfp, "pol": pol.hex(),
                            "sig": base64.b64encode(sig).decode()})
    return json.dumps(out).encode()
