"""Talking to a TPM 2.0: a character device (/dev/tpmrm0) or a software TPM's command socket
(`swtpm:path=SOCKET`, as systemd names it). Only what sealing to the TPM needs: its storage
primary's public area and its PCR values."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from rdforge.errors import RdforgeError
from rdforge.formats import tpm2
from rdforge.formats.tpm2 import Reader, b2

ST_NO_SESSIONS, ST_SESSIONS = 0x8001, 0x8002
CC_CREATE_PRIMARY, CC_FLUSH_CONTEXT, CC_PCR_READ = 0x131, 0x165, 0x17E
RH_OWNER, RS_PW = 0x40000001, 0x40000009


class TPMDeviceError(RdforgeError):
    """The TPM cannot be reached or refused a command."""


class TPM:
    def __init__(self, device: str) -> None:
        self.device = device
        self._sock: socket.socket | None = None
        self._fd: int | None = None
        try:
            if device.startswith("swtpm:"):
                opts = dict(kv.partition("=")[::2] for kv in device[6:].split(","))
                path = opts.get("path", "")
                if not path:
                    raise TPMDeviceError(f"{device}: expected swtpm:path=SOCKET")
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(30)
                self._sock.connect(path)
            else:
                self._fd = os.open(device, os.O_RDWR)
        except OSError as e:
            raise TPMDeviceError(f"{device}: cannot open the TPM: {e.strerror or e}") from e

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._fd is not None:
            os.close(self._fd)

    def __enter__(self) -> TPM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self, n: int) -> bytes:
        assert self._sock is not None
        out = b""
        while len(out) < n:
            chunk = self._sock.recv(n - len(out))
            if not chunk:
                raise TPMDeviceError(f"{self.device}: the TPM closed the connection")
            out += chunk
        return out

    def command(self, tag: int, code: int, body: bytes) -> Reader:
        cmd = struct.pack(">HII", tag, 10 + len(body), code) + body
        try:
            if self._sock is not None:
                self._sock.sendall(cmd)
                head = self._recv(10)
                resp = head + self._recv(struct.unpack(">I", head[2:6])[0] - 10)
            else:
                assert self._fd is not None
                os.write(self._fd, cmd)
                resp = os.read(self._fd, 4096)
        except OSError as e:
            raise TPMDeviceError(f"{self.device}: {e.strerror or e}") from e
        r = Reader(resp)
        r.u16()
        r.u32()
        rc = r.u32()
        if rc != 0:
            raise TPMDeviceError(f"{self.device}: the TPM refused command 0x{code:x} "
                                 f"(response code 0x{rc:x})")
        return r

    def storage_primary(self) -> bytes:
        """TPM2B_PUBLIC of the storage primary systemd seals credentials under (made from its
        template in the owner hierarchy, which gives the same key on every call)."""
        auth = struct.pack(">I", RS_PW) + b2(b"") + b"\0" + b2(b"")  # empty owner password
        body = (struct.pack(">I", RH_OWNER) + struct.pack(">I", len(auth)) + auth
                + b2(b2(b"") + b2(b""))  # inSensitive: no auth, no data
                + b2(tpm2.primary_template()) + b2(b"") + struct.pack(">I", 0))
        r = self.command(ST_SESSIONS, CC_CREATE_PRIMARY, body)
        handle = r.u32()
        r.u32()  # parameter size
        public = r.b2()
        self.command(ST_NO_SESSIONS, CC_FLUSH_CONTEXT, struct.pack(">I", handle))
        return b2(public)

    def pcr_values(self, pcrs: list[int]) -> dict[int, bytes]:
        """The SHA-256 bank's current values of these PCRs."""
        out: dict[int, bytes] = {}
        for i in sorted(pcrs):  # one at a time: a TPM returns at most 8 digests per call
            r = self.command(ST_NO_SESSIONS, CC_PCR_READ, tpm2.pcr_selection([i]))
            r.u32()  # update counter
            count = r.u32()
            for _ in range(count):
                r.u16()
                r.take(r.u8())
            digests = [r.b2() for _ in range(r.u32())]
            if len(digests) != 1 or len(digests[0]) != 32:
                raise TPMDeviceError(f"{self.device}: the TPM has no SHA-256 value for PCR {i}")
            out[i] = digests[0]
        return out


def default_device() -> str:
    return "/dev/tpmrm0" if Path("/dev/tpmrm0").exists() else "/dev/tpm0"
