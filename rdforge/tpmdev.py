"""Talking to a TPM 2.0: a character device (/dev/tpmrm0) or a software TPM's command socket
(`swtpm:path=SOCKET`, as systemd names it). Only what credentials need: the storage primary's
public area and PCR values (to seal), and import, load and a PCR-policy unseal (to open)."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

from rdforge.errors import RdforgeError
from rdforge.formats import tpm2
from rdforge.formats.tpm2 import Reader, b2

ST_NO_SESSIONS, ST_SESSIONS = 0x8001, 0x8002
CC_CREATE_PRIMARY, CC_FLUSH_CONTEXT, CC_PCR_READ = 0x131, 0x165, 0x17E
CC_IMPORT, CC_LOAD, CC_UNSEAL, CC_START_AUTH_SESSION, CC_POLICY_PCR = 0x156, 0x157, 0x15E, 0x176, 0x17F
RH_OWNER, RH_NULL, RS_PW = 0x40000001, 0x40000007, 0x40000009
SE_POLICY = 0x01
RC_RETRY, RC_YIELDED, RC_TESTING = 0x922, 0x908, 0x90A
RC_FMT1, RC_POLICY_FAIL, RC_INTEGRITY = 0x080, 0x01D, 0x01F


def _explain(code: int, rc: int) -> str:
    """What a refusal means for sealing and unsealing; the raw codes otherwise."""
    if rc & RC_FMT1 and rc & 0x3F == RC_POLICY_FAIL:
        return "the TPM refused to unseal: its PCRs do not hold the values the policy names"
    if rc & RC_FMT1 and rc & 0x3F == RC_INTEGRITY and code in (CC_IMPORT, CC_LOAD):
        return "this was not sealed to this TPM (the TPM's integrity check fails)"
    return f"the TPM refused command 0x{code:x} (response code 0x{rc:x})"


def _auth(session: int) -> bytes:
    """A command's authorization area with one session and no nonce, attributes or HMAC: the
    empty password (RS_PW: the owner hierarchy and systemd's primary have none), or a policy
    session whose policy needs no HMAC."""
    area = struct.pack(">I", session) + b2(b"") + b"\0" + b2(b"")
    return struct.pack(">I", len(area)) + area


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
        for _attempt in range(50):
            r = Reader(self._transact(cmd))
            r.u16()
            r.u32()
            rc = r.u32()
            if rc in (RC_RETRY, RC_YIELDED, RC_TESTING):  # busy: the command was not run
                time.sleep(0.05)
                continue
            if rc != 0:
                raise TPMDeviceError(f"{self.device}: {_explain(code, rc)}")
            return r
        raise TPMDeviceError(f"{self.device}: the TPM stayed busy (command 0x{code:x})")

    def _transact(self, cmd: bytes) -> bytes:
        try:
            if self._sock is not None:
                self._sock.sendall(cmd)
                head = self._recv(10)
                return head + self._recv(struct.unpack(">I", head[2:6])[0] - 10)
            assert self._fd is not None
            os.write(self._fd, cmd)
            return os.read(self._fd, 4096)
        except OSError as e:
            raise TPMDeviceError(f"{self.device}: {e.strerror or e}") from e

    def _create_primary(self) -> tuple[int, bytes]:
        body = (struct.pack(">I", RH_OWNER) + _auth(RS_PW)
                + b2(b2(b"") + b2(b""))  # inSensitive: no auth, no data
                + b2(tpm2.primary_template()) + b2(b"") + struct.pack(">I", 0))
        r = self.command(ST_SESSIONS, CC_CREATE_PRIMARY, body)
        handle = r.u32()
        r.u32()  # parameter size
        return handle, b2(r.b2())

    def flush(self, handle: int) -> None:
        self.command(ST_NO_SESSIONS, CC_FLUSH_CONTEXT, struct.pack(">I", handle))

    def storage_primary(self) -> bytes:
        """TPM2B_PUBLIC of the storage primary systemd seals credentials under (made from its
        template in the owner hierarchy, which gives the same key on every call)."""
        handle, public = self._create_primary()
        self.flush(handle)
        return public

    def unseal(self, blob: bytes, pcr_mask: int) -> bytes:
        """The secret of a sealed object as systemd keeps it (TPM2B_PRIVATE, TPM2B_PUBLIC and,
        when it was sealed without the TPM, the TPM2B_ENCRYPTED_SECRET to import it with),
        under systemd's primary, through a policy session on the SHA-256 PCRs of pcr_mask."""
        r = Reader(blob)
        private, public = b2(r.b2()), b2(r.b2())
        seed = b2(r.b2()) if r.pos < len(blob) else b""
        parent, _ = self._create_primary()
        handles = [parent]
        try:
            if seed and seed != b2(b""):
                body = (struct.pack(">I", parent) + _auth(RS_PW) + b2(b"") + public + private
                        + seed + struct.pack(">H", tpm2.ALG_NULL))
                rr = self.command(ST_SESSIONS, CC_IMPORT, body)
                rr.u32()
                private = b2(rr.b2())
            rr = self.command(ST_SESSIONS, CC_LOAD,
                              struct.pack(">I", parent) + _auth(RS_PW) + private + public)
            obj = rr.u32()
            handles.append(obj)
            body = (struct.pack(">II", RH_NULL, RH_NULL) + b2(os.urandom(16)) + b2(b"")
                    + struct.pack(">BHH", SE_POLICY, tpm2.ALG_NULL, tpm2.ALG_SHA256))
            rr = self.command(ST_NO_SESSIONS, CC_START_AUTH_SESSION, body)
            session = rr.u32()
            handles.append(session)
            pcrs = [i for i in range(24) if pcr_mask >> i & 1]
            if pcrs:
                self.command(ST_NO_SESSIONS, CC_POLICY_PCR, struct.pack(">I", session) + b2(b"")
                             + tpm2.pcr_selection(pcrs))
            # The policy session authorizes; its HMAC is empty (no PolicyAuthValue was run).
            rr = self.command(ST_SESSIONS, CC_UNSEAL, struct.pack(">I", obj) + _auth(session))
            handles.remove(session)  # ended with the command (continueSession not set)
            rr.u32()
            return rr.b2()
        finally:
            for h in reversed(handles):
                try:
                    self.flush(h)
                except TPMDeviceError:
                    pass

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
    """This machine's TPM; an error that says what to do instead when it has none."""
    for dev in ("/dev/tpmrm0", "/dev/tpm0"):
        if Path(dev).exists():
            return dev
    raise TPMDeviceError("this machine has no TPM: give --tpm2-device DEV, or --tpm2-primary "
                         "FILE (saved on the target with `rdforge tpm2-primary`) to seal without it")
