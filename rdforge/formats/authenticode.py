"""Authenticode signatures for PE images (what UEFI Secure Boot verifies), written by rdforge:
the image's Authenticode SHA-256 digest in a SpcIndirectDataContent, signed as PKCS#7
SignedData with the signer's certificate, appended as the image's attribute certificate table.

No signing time is included, and RSA PKCS#1 v1.5 is deterministic: the same image and key
give the same signed bytes."""

from __future__ import annotations

import hashlib
import struct
from typing import Protocol

from rdforge.errors import FormatError
from rdforge.formats.pe import OPT_CHECKSUM, OPT_DATA_DIRECTORIES, PE, SECURITY_DIRECTORY

# Object identifiers.
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_RSA = "1.2.840.113549.1.1.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
OID_SPC_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"
OID_SPC_SP_OPUS_INFO = "1.3.6.1.4.1.311.2.1.12"
WIN_CERT_REVISION_2 = 0x0200
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002


class RsaSigner(Protocol):
    def sign_pkcs1_sha256(self, data: bytes) -> bytes: ...

    @property
    def cert_der(self) -> bytes: ...

    @property
    def issuer_der(self) -> bytes: ...

    @property
    def serial(self) -> int: ...


# --- a minimal DER writer ----------------------------------------------------------------

def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _set(*items: bytes) -> bytes:
    return _tlv(0x31, b"".join(sorted(items)))  # DER: SET OF elements in sorted order


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _int(v: int) -> bytes:
    raw = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True)
    return _tlv(0x02, raw)


def _octets(b: bytes) -> bytes:
    return _tlv(0x04, b)


def _explicit(n: int, content: bytes) -> bytes:
    return _tlv(0xA0 | n, content)


NULL = b"\x05\x00"


def _alg(oid: str) -> bytes:
    return _seq(_oid(oid), NULL)


# --- the Authenticode digest -------------------------------------------------------------

def image_digest(data: bytes) -> bytes:
    """SHA-256 over the image as Authenticode defines it: headers without the checksum and
    the certificate table's directory entry, the sections in file order, then any data after
    them up to the certificate table."""
    pe = PE.parse(data)
    chk = pe.opt_offset + OPT_CHECKSUM
    sec = pe.opt_offset + OPT_DATA_DIRECTORIES + SECURITY_DIRECTORY * 8
    headers = struct.unpack_from("<I", data, pe.opt_offset + 60)[0]
    h = hashlib.sha256()
    h.update(data[:chk])
    h.update(data[chk + 4:sec])
    h.update(data[sec + 8:headers])
    end = headers
    for s in sorted((s for s in pe.sections if s.raw_size), key=lambda s: s.raw_pointer):
        h.update(data[s.raw_pointer:s.raw_pointer + s.raw_size])
        end = max(end, s.raw_pointer + s.raw_size)
    cert_off, cert_size = pe.security
    tail_end = cert_off if cert_off else len(data)
    if end < tail_end:
        h.update(data[end:tail_end])
    return h.digest()


def _indirect_data(digest: bytes) -> bytes:
    obsolete = "<<<Obsolete>>>".encode("utf-16-be")
    pe_image_data = _seq(_tlv(0x03, b"\x00"),                       # flags: empty BIT STRING
                         _explicit(0, _tlv(0xA2, _tlv(0x80, obsolete))))  # file: SpcLink
    return _seq(_seq(_oid(OID_SPC_PE_IMAGE_DATA), pe_image_data),
                _seq(_alg(OID_SHA256), _octets(digest)))


def signed_data(digest: bytes, signer: RsaSigner) -> bytes:
    indirect = _indirect_data(digest)
    # The messageDigest attribute covers the SpcIndirectDataContent's contents octets only.
    body = indirect[2:] if indirect[1] < 0x80 else indirect[2 + (indirect[1] & 0x7F):]
    attrs = [
        _seq(_oid(OID_CONTENT_TYPE), _set(_oid(OID_SPC_INDIRECT_DATA))),
        _seq(_oid(OID_MESSAGE_DIGEST), _set(_octets(hashlib.sha256(body).digest()))),
        _seq(_oid(OID_SPC_SP_OPUS_INFO), _set(_seq())),
    ]
    signature = signer.sign_pkcs1_sha256(_set(*attrs))  # signed as a SET, stored as [0]
    signer_info = _seq(_int(1), _seq(signer.issuer_der, _int(signer.serial)), _alg(OID_SHA256),
                       _tlv(0xA0, b"".join(sorted(attrs))), _alg(OID_RSA), _octets(signature))
    sd = _seq(_int(1), _set(_alg(OID_SHA256)),
              _seq(_oid(OID_SPC_INDIRECT_DATA), _explicit(0, indirect)),
              _tlv(0xA0, signer.cert_der), _set(signer_info))
    return _seq(_oid(OID_SIGNED_DATA), _explicit(0, sd))


def _unsigned_padded(data: bytes) -> bytes:
    """The image as a signature covers it: unsigned, padded to 8 bytes (where the
    certificate table will start)."""
    pe = PE.parse(data)
    if pe.security != (0, 0):
        raise FormatError("the image is signed already")
    return data + b"\0" * (-len(data) % 8)


def unsigned(data: bytes) -> bytes:
    """The image without its certificate table (what sbattach --remove does): the bytes
    its signatures were made over, ready to be signed with another key."""
    pe = PE.parse(data)
    off, size = pe.security
    if (off, size) == (0, 0):
        return data
    if off + size != len(data) and data[off + size:].strip(b"\0"):
        raise FormatError("data follows the certificate table: cannot remove it")
    image = bytearray(data[:off])
    sec = pe.opt_offset + OPT_DATA_DIRECTORIES + SECURITY_DIRECTORY * 8
    struct.pack_into("<II", image, sec, 0, 0)
    return bytes(image)


def detached(data: bytes, signer: RsaSigner) -> bytes:
    """A detached Authenticode signature of an unsigned image (PKCS#7 SignedData, DER), as
    `sbsign --detached` makes and a signing service returns."""
    return signed_data(image_digest(_unsigned_padded(data)), signer)


def signed_digest(blob: bytes) -> bytes | None:
    """The image digest a detached signature signs (from its SpcIndirectDataContent)."""
    for alg in (_alg(OID_SHA256), _seq(_oid(OID_SHA256))):  # with or without NULL parameters
        marker = _oid(OID_SPC_INDIRECT_DATA)
        start = blob.find(marker)
        at = blob.find(alg + b"\x04\x20", start if start >= 0 else 0)
        if at >= 0:
            off = at + len(alg) + 2
            return blob[off:off + 32] if len(blob) >= off + 32 else None
    return None


def sign(data: bytes, signer: RsaSigner) -> bytes:
    """The image with one Authenticode signature appended (the image must be unsigned)."""
    return attach(data, detached(data, signer))


def attach(data: bytes, blob: bytes) -> bytes:
    """The image with a detached signature appended as its certificate table (what sbattach
    --attach does). The signature must be over this very image."""
    image = bytearray(_unsigned_padded(data))
    pe = PE.parse(data)
    if not blob.startswith(b"\x30") or signed_digest(blob) is None:
        raise FormatError("not a detached Authenticode signature (PKCS#7 SignedData over a "
                          "SHA-256 image digest)")
    if signed_digest(blob) != image_digest(bytes(image)):
        raise FormatError("the signature is not over this image (its digest differs)")
    return certificate_table(bytes(image), pe, blob)


def certificate_table(image: bytes, pe: PE, blob: bytes) -> bytes:
    """image (unsigned, 8-byte padded) with blob as its one WIN_CERTIFICATE, unchecked."""
    cert = struct.pack("<IHH", 8 + len(blob), WIN_CERT_REVISION_2, WIN_CERT_TYPE_PKCS_SIGNED_DATA)
    cert += blob
    cert += b"\0" * (-len(cert) % 8)
    out = bytearray(image + cert)
    sec = pe.opt_offset + OPT_DATA_DIRECTORIES + SECURITY_DIRECTORY * 8
    struct.pack_into("<II", out, sec, len(image), len(cert))
    return bytes(out)
