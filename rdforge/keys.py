"""Signing keys: `rdforge genkey` (RSA key + self-signed X.509 certificate), loading them,
and detached PKCS#7 signatures as the kernel and systemd verify them for dm-verity."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rdforge.errors import KeyMaterialError
from rdforge.fsutil import write_atomic


@dataclass(frozen=True)
class SigningKey:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate's DER form, as the verity-sig partition names it."""
        return hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    def sign_pkcs1_sha256(self, data: bytes) -> bytes:
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def issuer_der(self) -> bytes:
        return self.cert.issuer.public_bytes()

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def sign_detached(self, data: bytes) -> bytes:
        """DER PKCS#7 over data, detached, without signed attributes (so it is deterministic
        for RSA and what the kernel's verify_pkcs7_signature() accepts)."""
        opts = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.NoAttributes,
                pkcs7.PKCS7Options.Binary]
        return (pkcs7.PKCS7SignatureBuilder().set_data(data)
                .add_signer(self.cert, self.key, hashes.SHA256())
                .sign(serialization.Encoding.DER, opts))


def load_cert(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KeyMaterialError(f"certificate {path}: {e.strerror}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion, UnsupportedAlgorithm):
        raise KeyMaterialError(f"certificate {path}: not an X.509 certificate (PEM or DER)") from None


def load_private_key(key_path: Path) -> rsa.RSAPrivateKey:
    try:
        data = key_path.read_bytes()
    except OSError as e:
        raise KeyMaterialError(f"key {key_path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyMaterialError(f"key {key_path}: not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyMaterialError(f"key {key_path}: only RSA keys are supported (the kernel's dm-verity "
                               "and Secure Boot verify RSA)")
    return key


def load_signing_key(key_path: Path, cert_path: Path) -> SigningKey:
    key = load_private_key(key_path)
    cert = load_cert(cert_path)
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise KeyMaterialError(f"certificate {cert_path} does not belong to key {key_path}")
    return SigningKey(key, cert)


def genkey(name: str, outdir: Path, bits: int = 2048, days: int = 3650,
           force: bool = False) -> tuple[Path, Path]:
    """A new RSA key and a self-signed certificate for signing sysexts and UKIs. An existing
    key or certificate is replaced only with force: its certificate may be enrolled in
    firmware (db, MOK) or trusted by the images it signed, and a new key would not be."""
    if not name.strip():
        raise KeyMaterialError("genkey: --name must not be empty")
    key_path, cert_path = outdir / "key.pem", outdir / "cert.pem"
    there = [p for p in (key_path, cert_path) if p.exists() or p.is_symlink()]
    if there and not force:
        raise KeyMaterialError(f"genkey: {there[0]} exists; a new key would not be the one "
                               "firmware or signed images trust (--force replaces it)")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256()))
    outdir.mkdir(parents=True, exist_ok=True)
    write_atomic(key_path, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
