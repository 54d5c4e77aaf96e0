"""Binding a credential to a TPM: the TPM's storage key from the device (or from a file saved
on the machine earlier), PCR values from the device or the command line, and the sealed
secret that systemd unseals at boot."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rdforge.errors import ConfigError
from rdforge.formats import tpm2
from rdforge.formats.creds import TPM2Seal
from rdforge.tpmdev import TPM, default_device


def parse_pcrs(spec: str) -> dict[int, bytes | None]:
    """systemd's PCR syntax: "7", "7+11", "7:sha256=HEX+11"; a value of None is read from the
    TPM. Only the SHA-256 bank."""
    out: dict[int, bytes | None] = {}
    for item in filter(None, spec.split("+")):
        m = re.fullmatch(r"(\d+)(?::sha256=([0-9a-fA-F]{64}))?", item.strip())
        if not m or int(m.group(1)) > 23:
            raise ConfigError(f"--tpm2-pcrs {spec!r}: {item!r} is not a PCR (0-23, optionally "
                              "with :sha256=<64 hex digits>)")
        out[int(m.group(1))] = bytes.fromhex(m.group(2)) if m.group(2) else None
    return out


def storage_primary(device: str | None, primary_file: str | None) -> bytes:
    if primary_file:
        try:
            return Path(primary_file).read_bytes()
        except OSError as e:
            raise ConfigError(f"--tpm2-primary {primary_file}: {e.strerror}") from None
    with TPM(device or default_device()) as t:
        return t.storage_primary()


def pcr_public_key(path: str, pcr_spec: str) -> tuple[bytes, bytes, int]:
    """(PEM, TPM name, PCR mask) of a PCR signing key's public half, given as a public key
    or as the private key itself (PEM), with the PCRs its signed policies cover."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"--tpm2-public-key {path}: {e.strerror}") from None
    try:
        key = (serialization.load_pem_private_key(data, None).public_key()
               if b"PRIVATE KEY" in data else serialization.load_pem_public_key(data))
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ConfigError(f"--tpm2-public-key {path}: not a PEM key ({e})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"--tpm2-public-key {path}: only RSA PCR signing keys are supported")
    pcrs = parse_pcrs(pcr_spec)
    if not pcrs or any(v is not None for v in pcrs.values()):
        raise ConfigError(f"--tpm2-public-key-pcrs {pcr_spec!r}: give PCR numbers (11, 7+11), "
                          "no values: the signed policies name them")
    pem = key.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, tpm2.rsa_key_name(key), sum(1 << i for i in pcrs)


def seal_for_tpm(device: str | None, primary_file: str | None, pcr_spec: str,
                 public_key: str | None = None, public_key_pcrs: str = "11") -> TPM2Seal:
    """A fresh 32-byte secret sealed to the TPM's storage primary, under a policy on the
    given PCRs (their values as given, else as the TPM has them now). With a PCR signing
    key's public half the policy starts with PolicyAuthorize by that key, as systemd's: the
    secret then also needs a policy on `public_key_pcrs` that the key signed."""
    signer = pcr_public_key(public_key, public_key_pcrs) if public_key else None
    pcrs = parse_pcrs(pcr_spec)
    unknown = sorted(i for i, v in pcrs.items() if v is None)
    values: dict[int, bytes] = {i: v for i, v in pcrs.items() if v is not None}
    if unknown and primary_file and not device:
        raise ConfigError(f"PCR {unknown[0]} has no value: without a TPM (--tpm2-primary) give "
                          "each as PCR:sha256=HEX")
    if primary_file:
        public = storage_primary(None, primary_file)
    if unknown or not primary_file:
        with TPM(device or default_device()) as t:  # one session with the TPM for both
            values.update(t.pcr_values(unknown))
            if not primary_file:
                public = t.storage_primary()
    try:
        parent = tpm2.parse_public(public)
    except tpm2.TPMError as e:
        what = f"--tpm2-primary {primary_file}" if primary_file else "the TPM's storage key"
        raise ConfigError(f"{what}: not a usable TPM storage key ({e})") from None
    secret = os.urandom(32)
    start = tpm2.policy_authorize(signer[1]) if signer else bytes(32)
    policy = tpm2.policy_pcr(values, start=start)
    sealed = tpm2.seal(parent, secret, policy)
    return TPM2Seal(secret, sealed.blob, policy, sum(1 << i for i in values),
                    signer[0] if signer else None, signer[2] if signer else 0)


def tpm2_unsealer(device: str | None) -> Callable[[bytes, int], bytes]:
    """Unseals with the TPM (the given device, else this machine's), opened only when a
    credential turns out to be TPM-bound."""
    def unseal(blob: bytes, pcr_mask: int) -> bytes:
        with TPM(device or default_device()) as t:
            return t.unseal(blob, pcr_mask)
    return unseal
