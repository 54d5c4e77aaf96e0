"""`rdforge credential --encrypt tpm2` and `rdforge tpm2-primary`: bad input is one clear line
and writes nothing; a saved storage key seals without the TPM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rdforge.formats import creds

SRK = (Path(__file__).parent / "data" / "swtpm-srk.tpm2b_public").read_bytes()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", *args], capture_output=True,
                          text=True)


def test_seals_offline_to_a_saved_storage_key(tmp_path: Path) -> None:
    (tmp_path / "srk").write_bytes(SRK)
    out = tmp_path / "x.cred"
    r = _cli("credential", "x", "--value", "v", "--encrypt", "tpm2", "--tpm2-primary",
             str(tmp_path / "srk"), "--tpm2-pcrs", "7:sha256=" + "00" * 32, "-o", str(out))
    assert r.returncode == 0, r.stderr
    raw = creds.unarmor(out.read_bytes())
    assert raw[:16] == creds.KEY_TPM2.bytes
    mask, bank, alg, blob, pol = creds.TPM2_HEADER.unpack_from(raw, 48)
    assert (mask, bank, alg, pol) == (1 << 7, 0x000B, 0x0023, 32)


def test_bad_tpm_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "srk").write_bytes(SRK)
    (tmp_path / "junk").write_bytes(b"not a key")
    out = tmp_path / "x.cred"
    cases = [
        (["--encrypt", "tpm2", "--tpm2-primary", str(tmp_path / "srk"), "--tpm2-pcrs", "7"],
         "PCR 7 has no value"),
        (["--encrypt", "tpm2", "--tpm2-primary", str(tmp_path / "junk")], "not a usable TPM"),
        (["--encrypt", "tpm2", "--tpm2-device", str(tmp_path / "no-tpm")], "cannot open the TPM"),
        (["--encrypt", "null", "--tpm2-pcrs", "7"], "need --encrypt tpm2"),
        (["--encrypt", "tpm2", "--tpm2-primary", str(tmp_path / "srk"), "--tpm2-pcrs", "99"],
         "is not a PCR"),
    ]
    for args, msg in cases:
        r = _cli("credential", "x", "--value", "v", *args, "-o", str(out))
        assert r.returncode == 1 and msg in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
        assert not out.exists()


def test_encrypt_auto_picks_the_strongest_key_the_targets_facts_allow(tmp_path: Path) -> None:
    (tmp_path / "srk").write_bytes(SRK)
    (tmp_path / "secret").write_bytes(bytes(range(16)) * 257)  # credential.secret's size
    pcr = ["--tpm2-pcrs", "7:sha256=" + "00" * 32]
    cases = [([], creds.KEY_NULL),
             (["--host-secret", str(tmp_path / "secret")], creds.KEY_HOST),
             (["--tpm2-primary", str(tmp_path / "srk"), *pcr], creds.KEY_TPM2),
             (["--tpm2-primary", str(tmp_path / "srk"), *pcr, "--host-secret",
               str(tmp_path / "secret")], creds.KEY_HOST_TPM2)]
    for i, (args, key) in enumerate(cases):
        out = tmp_path / f"{i}.cred"
        r = _cli("credential", "x", "--value", "v", "--encrypt", "auto", *args, "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert creds.unarmor(out.read_bytes())[:16] == key.bytes, args
