"""TPM 2.0 structures for sealing a secret to a TPM without the TPM doing the sealing
(TCG TPM 2.0 Library, Part 1 "Architecture": duplication, KDFa/KDFe; Part 2 "Structures").

A sealed object is a KEYEDHASH object whose sensitive part holds the secret. Instead of asking
the TPM to create it, it is made here the way a duplicated object is made: its sensitive part
is encrypted with a key derived from a fresh seed, and the seed is encrypted to the public key
of the parent (the TPM's storage primary). The TPM takes it in with TPM2_Import, then loads and
unseals it. Only that TPM, which holds the parent's private key, can do so; what is needed here
is the parent's public area, which can be read from the TPM once, or on another machine.

All integers in TPM structures are big endian. TPM2B_* is a 16-bit size and that many bytes."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

from rdforge.errors import FormatError

try:  # CFB lives among the "decrepit" modes in newer releases of cryptography
    from cryptography.hazmat.decrepit.ciphers.modes import CFB as CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB as CFB

ALG_RSA, ALG_KEYEDHASH, ALG_SHA256, ALG_AES, ALG_NULL, ALG_ECC, ALG_CFB = (
    0x0001, 0x0008, 0x000B, 0x0006, 0x0010, 0x0023, 0x0043)
ECC_NIST_P256 = 0x0003
CC_POLICY_PCR, CC_POLICY_AUTHORIZE = 0x0000017F, 0x0000016A

# TPMA_OBJECT bits
FIXED_TPM, FIXED_PARENT, SENSITIVE_DATA_ORIGIN, USER_WITH_AUTH = 0x2, 0x10, 0x20, 0x40
NO_DA, RESTRICTED, DECRYPT, SIGN_ENCRYPT = 0x400, 0x10000, 0x20000, 0x40000

# systemd's "legacy" ECC primary: the storage key its credentials are sealed under, made
# again from this template (and the TPM's owner seed) whenever one is decrypted.
PRIMARY_ATTRIBUTES = (RESTRICTED | DECRYPT | FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN
                      | USER_WITH_AUTH)
# The sealed object: TPM2_Import takes no object that claims fixedTPM or fixedParent (it was
# not made by this TPM); without userWithAuth it is usable only through a policy session
# (with no PCRs, the empty policy).
SEALED_ATTRIBUTES = 0


class TPMError(FormatError):
    """A TPM structure that cannot be read or used."""


def b2(data: bytes) -> bytes:
    """A TPM2B: 16-bit size, then the bytes."""
    if len(data) > 0xFFFF:
        raise TPMError("a TPM2B cannot hold more than 65535 bytes")
    return struct.pack(">H", len(data)) + data


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise TPMError("a TPM structure ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def b2(self) -> bytes:
        return self.take(self.u16())


def primary_template() -> bytes:
    """TPMT_PUBLIC of systemd's legacy ECC storage primary (unique left empty: the TPM fills it)."""
    return (struct.pack(">HHI", ALG_ECC, ALG_SHA256, PRIMARY_ATTRIBUTES) + b2(b"")
            + struct.pack(">HHH", ALG_AES, 128, ALG_CFB)  # symmetric: AES-128-CFB
            + struct.pack(">HHH", ALG_NULL, ECC_NIST_P256, ALG_NULL)  # scheme, curve, kdf
            + b2(b"") + b2(b""))  # unique: x, y


@dataclass(frozen=True)
class StoragePublic:
    """The public area of an ECC storage key: what sealing to it needs."""

    name_alg: int
    attributes: int
    sym_alg: int
    sym_bits: int
    sym_mode: int
    curve: int
    x: bytes
    y: bytes
    area: bytes  # the TPMT_PUBLIC as marshalled

    @property
    def key(self) -> ec.EllipticCurvePublicKey:
        if self.curve != ECC_NIST_P256:
            raise TPMError(f"ECC curve 0x{self.curve:04x} is not supported (only NIST P-256)")
        return ec.EllipticCurvePublicNumbers(int.from_bytes(self.x, "big"),
                                             int.from_bytes(self.y, "big"),
                                             ec.SECP256R1()).public_key()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the uncompressed point, as systemd prints a TPM key's fingerprint."""
        return hashlib.sha256(b"\x04" + self.x + self.y).hexdigest()


def parse_public(tpm2b_public: bytes) -> StoragePublic:
    """A TPM2B_PUBLIC (as tpm2_readpublic and systemd write it) of an ECC storage key."""
    r = Reader(tpm2b_public)
    area = r.b2()
    if r.pos != len(tpm2b_public):
        raise TPMError("trailing bytes after the TPM2B_PUBLIC")
    a = Reader(area)
    typ, name_alg, attrs = a.u16(), a.u16(), a.u32()
    a.b2()  # authPolicy
    if typ != ALG_ECC:
        raise TPMError(f"the storage key is of type 0x{typ:04x}; only ECC keys are supported")
    if name_alg != ALG_SHA256:
        raise TPMError(f"the storage key's name algorithm 0x{name_alg:04x} is not SHA-256")
    if not (attrs & RESTRICTED and attrs & DECRYPT):
        raise TPMError("the key is not a storage key (restricted, decrypt)")
    sym_alg = a.u16()
    sym_bits = sym_mode = 0
    if sym_alg != ALG_NULL:
        sym_bits, sym_mode = a.u16(), a.u16()
    if (sym_alg, sym_mode) != (ALG_AES, ALG_CFB) or sym_bits not in (128, 256):
        raise TPMError("the storage key's symmetric algorithm is not AES-CFB")
    a.u16()  # scheme (NULL for a storage key)
    curve = a.u16()
    if a.u16() != ALG_NULL:
        raise TPMError("the storage key has a KDF scheme; a storage key has none")
    x, y = a.b2(), a.b2()
    if not x or not y:
        raise TPMError("the public area has no key (is it a template?)")
    return StoragePublic(name_alg, attrs, sym_alg, sym_bits, sym_mode, curve, x, y, area)


def kdfa(key: bytes, label: str, context: bytes, bits: int) -> bytes:
    """KDFa with SHA-256: SP 800-108 counter mode with HMAC, the label NUL-terminated."""
    kdf = KBKDFHMAC(algorithm=hashes.SHA256(), mode=Mode.CounterMode, length=(bits + 7) // 8,
                    rlen=4, llen=4, location=CounterLocation.BeforeFixed,
                    label=label.encode(), context=context, fixed=None)
    return kdf.derive(key)


def kdfe(z: bytes, label: str, party_u: bytes, party_v: bytes, bits: int) -> bytes:
    """KDFe with SHA-256: SP 800-56A's one-step KDF over Z, the label NUL-terminated, then
    the two parties' x coordinates."""
    info = label.encode() + b"\0" + party_u + party_v
    return ConcatKDFHash(algorithm=hashes.SHA256(), length=(bits + 7) // 8,
                         otherinfo=info).derive(z)


def policy_pcr(selection: dict[int, bytes], bank: int = ALG_SHA256,
               start: bytes = bytes(32)) -> bytes:
    """The policy digest of a SHA-256 session that ran TPM2_PolicyPCR on these PCR values of
    one bank, after the policy `start` (the empty policy unless given)."""
    if not selection:
        return start
    pcrs = sorted(selection)
    return hashlib.sha256(start + struct.pack(">I", CC_POLICY_PCR) + pcr_selection(pcrs, bank)
                          + hashlib.sha256(b"".join(selection[i] for i in pcrs)).digest()).digest()


def rsa_key_name(key: rsa.RSAPublicKey) -> bytes:
    """The TPM name (nameAlg, then the SHA-256 of TPMT_PUBLIC) of an RSA public key as systemd
    loads it to check a signed PCR policy: an external key for signing and decrypting, with
    userWithAuth, no symmetric algorithm or scheme, and the exponent written out (65537, not
    the 0 that would mean the same to the TPM but not to the name)."""
    nums = key.public_numbers()
    modulus = nums.n.to_bytes((key.key_size + 7) // 8, "big")
    public = (struct.pack(">HHI", ALG_RSA, ALG_SHA256, DECRYPT | SIGN_ENCRYPT | USER_WITH_AUTH)
              + b2(b"") + struct.pack(">HHHI", ALG_NULL, ALG_NULL, key.key_size, nums.e)
              + b2(modulus))
    return struct.pack(">H", ALG_SHA256) + hashlib.sha256(public).digest()


def policy_authorize(key_name: bytes, policy_ref: bytes = b"") -> bytes:
    """The policy digest after TPM2_PolicyAuthorize by the key of that name: any policy the
    key signed satisfies it. (PolicyAuthorize starts from the empty policy, whatever ran
    before it.)"""
    digest = hashlib.sha256(bytes(32) + struct.pack(">I", CC_POLICY_AUTHORIZE) + key_name).digest()
    return hashlib.sha256(digest + policy_ref).digest()


def pcr_selection(pcrs: list[int], bank: int = ALG_SHA256) -> bytes:
    """TPML_PCR_SELECTION: one bank, PCRs 0-23 as a 3-byte bitmap."""
    bitmap = bytearray(3)
    for i in pcrs:
        if not 0 <= i < 24:
            raise TPMError(f"PCR {i} does not exist (0 to 23)")
        bitmap[i // 8] |= 1 << (i % 8)
    return struct.pack(">IHB", 1, bank, 3) + bytes(bitmap)


def sealed_public(policy: bytes, unique: bytes) -> bytes:
    """TPMT_PUBLIC of a sealed data object."""
    return (struct.pack(">HHI", ALG_KEYEDHASH, ALG_SHA256, SEALED_ATTRIBUTES) + b2(policy)
            + struct.pack(">H", ALG_NULL) + b2(unique))


@dataclass(frozen=True)
class Sealed:
    private: bytes  # TPM2B_PRIVATE: the duplicate (outer HMAC, then encrypted sensitive)
    public: bytes  # TPM2B_PUBLIC
    seed: bytes  # TPM2B_ENCRYPTED_SECRET: the seed, as an ephemeral ECC point

    @property
    def blob(self) -> bytes:
        """The three, one after the other, as systemd keeps a sealed object."""
        return self.private + self.public + self.seed


def seal(parent: StoragePublic, secret: bytes, policy: bytes) -> Sealed:
    """Seal secret to parent: a TPM2_Import-able duplicate with an outer wrapper only."""
    if len(secret) > 128:
        raise TPMError("a sealed secret holds at most 128 bytes")
    # The seed: ECDH between a fresh key and the parent's, through KDFe ("DUPLICATE").
    eph = ec.generate_private_key(ec.SECP256R1())
    z = eph.exchange(ec.ECDH(), parent.key)
    nums = eph.public_key().public_numbers()
    ex, ey = nums.x.to_bytes(32, "big"), nums.y.to_bytes(32, "big")
    seed = kdfe(z, "DUPLICATE", ex, parent.x, 256)
    encrypted_seed = b2(ex) + b2(ey)  # TPMS_ECC_POINT
    # The object: its unique field binds the secret and a random obfuscation value.
    obfuscate = os.urandom(32)
    area = sealed_public(policy, hashlib.sha256(obfuscate + secret).digest())
    name = struct.pack(">H", ALG_SHA256) + hashlib.sha256(area).digest()
    sensitive = (struct.pack(">H", ALG_KEYEDHASH) + b2(b"")  # no authValue (no PIN)
                 + b2(obfuscate) + b2(secret))
    storage_key = kdfa(seed, "STORAGE", name, parent.sym_bits)
    enc = Cipher(algorithms.AES(storage_key), CFB(bytes(16))).encryptor()
    encrypted = enc.update(b2(sensitive)) + enc.finalize()
    integrity_key = kdfa(seed, "INTEGRITY", b"", 256)
    outer = hmac.new(integrity_key, encrypted + name, "sha256").digest()
    return Sealed(b2(b2(outer) + encrypted), b2(area), b2(encrypted_seed))
