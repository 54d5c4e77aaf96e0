#!/usr/bin/env bash
# Installs what rdforge and its tests need on a Debian machine (system packages via apt, then
# rdforge and its Python libraries into a virtual environment, .venv, so that a stock Debian
# python3, which refuses pip (PEP 668), is never touched), then builds the default initrd.
# Run as root. `--deps-only` skips the build.
set -euo pipefail
cd "$(dirname "$0")"
APT_PACKAGES=(
  gpgv gpg gpg-agent debian-archive-keyring kmod  # signature checks (and test archives), depmod
  qemu-system-x86 ovmf swtpm swtpm-tools       # the boot harness
  cpio zstd xz-utils lz4 iucode-tool               # reference tools for the image format
  e2fsprogs xfsprogs btrfs-progs dosfstools mtools fdisk gdisk
  cryptsetup-bin erofs-utils squashfs-tools sbsigntool binutils
  busybox-static
  systemd openssl openssh-client               # systemd-creds, PKCS#7 and ssh reference tools
  tpm2-tools                                     # the TPM libraries systemd-creds loads
  python3-venv                                   # the virtual environment rdforge runs in
  debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools faketime  # its .deb
  lintian diffoscope-minimal                     # Debian's policy checks, reproducibility
  mmdebstrap                                     # trixie systems for the packaging tests
  softhsm2 libengine-pkcs11-openssl opensc       # a PKCS#11 token for signing tests
  rpm rpm2cpio createrepo-c dnf                  # rpm, rpm-md and dnf reference tools
)
# ... and the one that reaches a software TPM (renamed for the 64-bit time_t transition)
# shellcheck disable=SC1091
if [ "$(. /etc/os-release; echo "${VERSION_CODENAME:-}")" = bookworm ]; then
  APT_PACKAGES+=(libtss2-tcti-swtpm0)
else
  APT_PACKAGES+=(libtss2-tcti-swtpm0t64)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
VENV="$PWD/.venv"
if ! "$VENV/bin/python3" -c 'import rdforge, zstandard, lz4, cryptography, pefile, virt.firmware, pytest, xdist' \
     2>/dev/null || [ "$("$VENV/bin/python3" -c 'import rdforge,os;print(os.path.dirname(rdforge.__file__))')" != "$PWD/rdforge" ]; then
  echo "setup: installing rdforge into $VENV" >&2
  [ -x "$VENV/bin/python3" ] || python3 -m venv "$VENV"
  "$VENV/bin/python3" -m pip install -q --disable-pip-version-check -e '.[test]'
fi
if [ "${1:-}" != "--deps-only" ]; then
  "$VENV/bin/rdforge" build -o initrd.img
  echo "setup: rdforge is $VENV/bin/rdforge ('. .venv/bin/activate' puts it on PATH)" >&2
fi
