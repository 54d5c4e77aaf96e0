"""systemd's encrypted credential format (what `systemd-creds encrypt` writes and the service
manager decrypts), for the keys that need no TPM: the null key (a zero-length secret, for
initrds on machines without a TPM: integrity only) and the host key (the 4096-byte secret in
/var/lib/systemd/credential.secret).

Layout, all little endian, the whole file base64-encoded:
  main header: 16-byte key-type id, key size (32), block size, IV size, tag size, IV,
               NUL-padded to 8 bytes                                    -- authenticated (AAD)
  AES-256-GCM ciphertext of: metadata header (timestamp, not-after, both in microseconds,
               name size, name, NUL-padded to 8 bytes) followed by the payload
  GCM tag (16 bytes)
The AES key is SHA-256 over the host secret (when used) followed by the TPM2 secret (when
used): the SHA-256 of nothing for the null key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rdforge.errors import FormatError

KEY_NULL = uuid.UUID("058469da-f6f5-4324-8005-49da0f8ea2fb")
KEY_HOST = uuid.UUID("5a1c6a86-df9d-4096-b1d5-a65e0862f19a")
KEY_TPM2 = uuid.UUID("0c7cc07b-1176-4591-9c4b-0bea08bc20fe")
KEY_HOST_TPM2 = uuid.UUID("93a89409-4874-4490-90ca-f2fc93cab553")
# The same, with the TPM policy authorised by a PCR signing key (signed PCR 11 policies).
KEY_TPM2_PK = uuid.UUID("faf7eb93-41e3-412c-a1a4-36f95a29362f")
KEY_HOST_TPM2_PK = uuid.UUID("af4950a8-4913-4eb1-a738-46304ff30c05")
KEY_NAMES = {KEY_NULL: "null", KEY_HOST: "host", KEY_TPM2: "tpm2", KEY_HOST_TPM2: "host+tpm2",
             KEY_TPM2_PK: "tpm2 with a PCR signing key",
             KEY_HOST_TPM2_PK: "host+tpm2 with a PCR signing key"}
PK_KINDS = (KEY_TPM2_PK, KEY_HOST_TPM2_PK)
TPM2_KINDS = (KEY_TPM2, KEY_HOST_TPM2, *PK_KINDS)
HOST_KINDS = (KEY_HOST, KEY_HOST_TPM2, KEY_HOST_TPM2_PK)

MAIN = struct.Struct("<16sIIII")
META = struct.Struct("<QQI")
IV_SIZE, TAG_SIZE, KEY_SIZE, BLOCK_SIZE = 12, 16, 32, 1
HOST_SECRET_SIZE = 4096
CREDENTIAL_SIZE_MAX = 1024 * 1024  # systemd's CREDENTIAL_SIZE_MAX
INFINITY = 0xFFFFFFFFFFFFFFFF


def _align8(n: int) -> int:
    return (n + 7) & ~7


class CredentialError(FormatError):
    """A credential that is malformed, corrupt, misnamed or cannot be decrypted."""


def check_name(name: str) -> None:
    """Valid both as a file name and as an fd name, as systemd requires."""
    if not name or len(name) > 255 or name in (".", "..") or "/" in name:
        raise CredentialError(f"invalid credential name {name!r}: it must be a plain file name")
    if not re.fullmatch(r"[\x21-\x7e]+", name) or ":" in name:
        raise CredentialError(f"invalid credential name {name!r}: printable ASCII without "
                              "spaces or ':' only")


def host_key(secret_file_content: bytes) -> bytes:
    """The host secret from a credential.secret file (16-byte hashed machine id, then 4096
    bytes of secret)."""
    if len(secret_file_content) != 16 + HOST_SECRET_SIZE:
        raise CredentialError(f"a host credential secret (credential.secret) is "
                              f"{16 + HOST_SECRET_SIZE} bytes; this one is "
                              f"{len(secret_file_content)}")
    return secret_file_content[16:]


def _aes_key(kind: uuid.UUID, host_secret: bytes | None) -> bytes:
    if kind == KEY_NULL:
        return hashlib.sha256(b"").digest()
    if kind == KEY_HOST:
        if host_secret is None:
            raise CredentialError("this credential is encrypted with a host key: give the host's "
                                  "credential secret")
        return hashlib.sha256(host_secret).digest()
    raise CredentialError(f"credentials bound to {KEY_NAMES.get(kind, str(kind))} are decrypted "
                          "by systemd on the machine that holds the key")


TPM2_HEADER = struct.Struct("<QHHII")  # PCR mask, PCR bank, primary's type, blob and policy sizes
TPM2_BANK_SHA256, TPM2_PRIMARY_ECC = 0x000B, 0x0023


@dataclass(frozen=True)
class TPM2Seal:
    """What binds a credential to a TPM: the secret (part of the AES key), and the same
    secret sealed to the TPM (formats.tpm2.seal) under a policy on these PCRs."""

    secret: bytes
    blob: bytes
    policy_hash: bytes
    pcr_mask: int = 0
    # With a PCR signing key: its public key (PEM, as systemd stores it) and the PCRs whose
    # signed policies unlock the secret (PCR 11 for UKIs).
    public_key: bytes | None = None
    public_key_pcr_mask: int = 0


PK_HEADER = struct.Struct("<QI")  # PCR mask of the signed policy, size of the PEM public key


def _tpm2_header(seal: TPM2Seal) -> bytes:
    h = TPM2_HEADER.pack(seal.pcr_mask, TPM2_BANK_SHA256, TPM2_PRIMARY_ECC, len(seal.blob),
                         len(seal.policy_hash)) + seal.blob + seal.policy_hash
    h = h.ljust(_align8(len(h)), b"\0")
    if seal.public_key is not None:
        pk = PK_HEADER.pack(seal.public_key_pcr_mask, len(seal.public_key)) + seal.public_key
        h += pk.ljust(_align8(len(pk)), b"\0")
    return h


def encrypt(name: str, data: bytes, kind: uuid.UUID = KEY_NULL, host_secret: bytes | None = None,
            timestamp_us: int = 0, not_after_us: int = INFINITY,
            tpm2: TPM2Seal | None = None) -> bytes:
    """The binary credential. The IV is derived from key and content (an HMAC), so the same
    inputs give the same bytes and different inputs never share an IV. The TPM-bound kinds
    need tpm2: its header follows the main header, and its secret goes into the AES key."""
    check_name(name)
    if len(data) > CREDENTIAL_SIZE_MAX:
        raise CredentialError(f"credential {name}: {len(data)} bytes, over systemd's limit of "
                              f"{CREDENTIAL_SIZE_MAX}")
    if not_after_us != INFINITY and not_after_us <= timestamp_us:
        raise CredentialError(f"credential {name}: not-after lies before its timestamp")
    if kind in TPM2_KINDS:
        if tpm2 is None:
            raise CredentialError(f"credential {name}: sealing to a TPM needs the TPM's key")
        if (tpm2.public_key is not None) != (kind in PK_KINDS):
            raise CredentialError(f"credential {name}: a PCR signing key goes with the "
                                  "signed-policy key types, and only with them")
        md = hashlib.sha256()
        if kind in HOST_KINDS:
            if host_secret is None:
                raise CredentialError("host+tpm2 needs the host's credential secret")
            md.update(host_secret)
        md.update(tpm2.secret)
        key = md.digest()
    else:
        key = _aes_key(kind, host_secret)
    nb = name.encode()
    meta = META.pack(timestamp_us, not_after_us, len(nb)) + nb
    meta = meta.ljust(_align8(len(meta)), b"\0")
    iv = hmac.new(key, b"rdforge credential IV\0" + meta + data, "sha256").digest()[:IV_SIZE]
    head = MAIN.pack(kind.bytes, KEY_SIZE, BLOCK_SIZE, IV_SIZE, TAG_SIZE) + iv
    head = head.ljust(_align8(len(head)), b"\0")
    if kind in TPM2_KINDS and tpm2 is not None:
        head += _tpm2_header(tpm2)
    sealed = AESGCM(key).encrypt(iv, meta + data, head)  # ciphertext followed by the tag
    return head + sealed


@dataclass(frozen=True)
class Credential:
    kind: str
    name: str
    timestamp_us: int
    not_after_us: int
    data: bytes


def unarmor(blob: bytes) -> bytes:
    """Base64 text (what systemd-creds writes) or the binary form."""
    text = blob.strip()
    if text[:MAIN.size] and re.fullmatch(rb"[A-Za-z0-9+/=\s]+", text):
        try:
            return base64.b64decode(b"".join(text.split()), validate=True)
        except binascii.Error:
            pass
    return blob


def _header(blob: bytes) -> tuple[bytes, uuid.UUID, int]:
    """The binary credential, its key type and IV size, from its checked main header."""
    raw = unarmor(blob)
    if len(raw) < MAIN.size:
        raise CredentialError("not a credential: too short")
    kid, ksz, bsz, ivsz, tsz = MAIN.unpack_from(raw)
    kind = uuid.UUID(bytes=kid)
    if kind not in KEY_NAMES:
        raise CredentialError("not a systemd credential (unknown key type)")
    if (ksz, tsz) != (KEY_SIZE, TAG_SIZE) or not 0 < ivsz <= 64 or bsz == 0:
        raise CredentialError("corrupt credential header")
    return raw, kind, ivsz


def decrypt(blob: bytes, expect_name: str | None = None, host_secret: bytes | None = None,
            tpm2_unseal: Callable[[bytes, int], bytes] | None = None) -> Credential:
    """tpm2_unseal(sealed blob, PCR mask) -> secret unseals a TPM-bound credential's key
    (rdforge.tpmdev.TPM.unseal); without it such credentials are refused."""
    raw, kind, ivsz = _header(blob)
    hlen = _align8(MAIN.size + ivsz)
    if kind in PK_KINDS:
        raise CredentialError(f"this credential is bound to {KEY_NAMES[kind]}: systemd "
                              "decrypts it on the machine that holds the TPM, with the "
                              "signature of the booted UKI's PCR 11 policy")
    if kind in (KEY_TPM2, KEY_HOST_TPM2):
        if tpm2_unseal is None:
            raise CredentialError(f"this credential is bound to {KEY_NAMES[kind]}: it is "
                                  "decrypted on the machine that holds the TPM (--tpm2-device)")
        if len(raw) < hlen + TPM2_HEADER.size:
            raise CredentialError("credential truncated")
        mask, bank, primary, blen, plen = TPM2_HEADER.unpack_from(raw, hlen)
        if (bank, primary) != (TPM2_BANK_SHA256, TPM2_PRIMARY_ECC):
            raise CredentialError("TPM-bound credential with a PCR bank or primary key other "
                                  "than SHA-256 and ECC: not supported")
        start = hlen + TPM2_HEADER.size
        if len(raw) < start + blen + plen:
            raise CredentialError("credential truncated")
        md = hashlib.sha256()
        if kind == KEY_HOST_TPM2:
            if host_secret is None:
                raise CredentialError("this credential is bound to host+tpm2: give the host's "
                                      "credential secret too")
            md.update(host_secret)
        md.update(tpm2_unseal(raw[start:start + blen], mask))
        key = md.digest()
        hlen = _align8(start + blen + plen)
    else:
        key = _aes_key(kind, host_secret)
    if len(raw) < hlen + _align8(META.size) + TAG_SIZE:
        raise CredentialError("credential truncated")
    iv = raw[MAIN.size:MAIN.size + ivsz]
    if not 8 <= len(iv) <= 128:
        raise CredentialError(f"credential header names an IV of {len(iv)} bytes (AES-GCM takes "
                              "8 to 128)")
    try:
        plain = AESGCM(key).decrypt(iv, raw[hlen:], raw[:hlen])
    except InvalidTag:
        raise CredentialError("credential does not authenticate: corrupt, truncated or "
                              "encrypted with another key") from None
    ts, not_after, nlen = META.unpack_from(plain)
    mlen = _align8(META.size + nlen)
    name = plain[META.size:META.size + nlen].decode(errors="replace")
    if expect_name is not None and nlen and name != expect_name:
        raise CredentialError(f"credential is named {name!r}, not {expect_name!r}")
    return Credential(KEY_NAMES[kind], name, ts, not_after, plain[mlen:])


# Credentials that systemd 257 reads in its generators rather than in a service. The two
# paths disagree on encrypted credentials handed over in /.extra/credentials (systemd-stub's
# way): the service manager decodes base64 (and takes nothing else), the generators take
# only the binary form.
GENERATOR_CREDENTIALS = ("systemd.extra-unit.", "systemd.unit-dropin.", "fstab.extra",
                         "getty.ttys.")


def for_initrd(name: str, blob: bytes) -> bytes:
    """A credential file's content as the initrd's consumer of that name reads it."""
    raw = unarmor(blob)
    return raw if name.startswith(GENERATOR_CREDENTIALS) else armor(raw)


def armor(raw: bytes) -> bytes:
    """Base64 as systemd-creds writes it (one line), newline-terminated."""
    return base64.b64encode(raw) + b"\n"


def describe(blob: bytes) -> dict[str, object]:
    """What a credential's header says, read without any key: the key type, the PCRs a
    TPM-bound one is sealed to (or whose signed policy unlocks it, with that key's SHA-256),
    and for a null-key one (which needs no key) its name and times. Never the secret."""
    raw, kind, ivsz = _header(blob)
    info: dict[str, object] = {"key": KEY_NAMES[kind], "size": len(raw),
                               "armored": raw is not blob}
    pos = _align8(MAIN.size + ivsz)
    if kind in TPM2_KINDS:
        if len(raw) < pos + TPM2_HEADER.size:
            raise CredentialError("credential truncated")
        mask, bank, primary, blen, plen = TPM2_HEADER.unpack_from(raw, pos)
        info["tpm2_pcrs"] = [i for i in range(24) if mask >> i & 1]
        info["tpm2_bank"] = "sha256" if bank == TPM2_BANK_SHA256 else f"0x{bank:04x}"
        info["tpm2_primary"] = "ecc" if primary == TPM2_PRIMARY_ECC else f"0x{primary:04x}"
        pos = _align8(pos + TPM2_HEADER.size + blen + plen)
        if kind in PK_KINDS:
            if len(raw) < pos + PK_HEADER.size:
                raise CredentialError("credential truncated")
            pk_mask, pk_len = PK_HEADER.unpack_from(raw, pos)
            pem = raw[pos + PK_HEADER.size:pos + PK_HEADER.size + pk_len]
            if len(pem) != pk_len:
                raise CredentialError("credential truncated")
            info["signed_policy_pcrs"] = [i for i in range(24) if pk_mask >> i & 1]
            info["pcr_public_key_sha256"] = hashlib.sha256(pem).hexdigest()
    if kind == KEY_NULL:
        c = decrypt(blob)
        info |= {"name": c.name, "timestamp_us": c.timestamp_us,
                 "not_after_us": None if c.not_after_us == INFINITY else c.not_after_us,
                 "secret_size": len(c.data)}
    else:
        info["name"] = None  # inside the encrypted part: the key is the machine's
    return info
