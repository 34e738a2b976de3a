#!/usr/bin/env bash
# Proves that install.sh brings a minimal Debian 12 up to what the platform and its
# tests need: builds a bare bookworm root with debootstrap (minbase variant), runs
# `install.sh --system-only` inside it with chroot, then checks each tool it must
# have left behind. Prints what is missing and exits non-zero if anything is.
#
#   sudo bash infra/local/check-minimal-debian.sh            # a fresh root under /tmp, removed after
#   sudo bash infra/local/check-minimal-debian.sh --keep DIR # build (or reuse) DIR and keep it
#
# Needs root (debootstrap, chroot, mount) and the network to an apt mirror: the
# first URI of this machine's apt sources, or the one COSMIC_DEBIAN_MIRROR names.
# It downloads several hundred MB and takes a few minutes; the test suite runs it
# only when COSMIC_CHECK_MINIMAL_DEBIAN=1.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
keep=false
root=""
if [[ "${1:-}" == "--keep" ]]; then
  keep=true
  root="${2:?--keep needs a folder}"
fi
[[ $(id -u) -eq 0 ]] || { echo "check: run as root (debootstrap and chroot need it)" >&2; exit 2; }

mirror="${COSMIC_DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  # deb822 sources first, then the one-line format.
  mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [[ -n "$mirror" ]] || mirror="$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list \
    /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
fi
[[ -n "$mirror" ]] || { echo "check: no apt mirror found; set COSMIC_DEBIAN_MIRROR" >&2; exit 2; }

start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }

if ! command -v debootstrap >/dev/null; then
  echo "check: installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

[[ -n "$root" ]] || root="$(mktemp -d /tmp/cosmic-minbase.XXXXXX)"
mkdir -p "$root"

unmount() {
  for m in "$root/dev/pts" "$root/dev" "$root/proc"; do
    if mountpoint -q "$m"; then umount "$m" || umount -l "$m"; fi
  done
}
cleanup() {
  unmount
  if ! $keep && [[ "$root" == /tmp/cosmic-minbase.* ]]; then
    # Only once nothing is mounted below it.
    if ! grep -q " $root/" /proc/mounts; then rm -rf "$root"; fi
  fi
}
trap cleanup EXIT

if [[ ! -x "$root/usr/bin/apt-get" ]]; then
  echo "check: debootstrap --variant=minbase bookworm $root $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
    tail -20 "$root.debootstrap.log" >&2; exit 1; }
  rm -f "$root.debootstrap.log"
  echo "check: minimal root ready after $(elapsed)"
fi

# Package scripts must not start services inside the chroot (there is no init).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"

mkdir -p "$root/opt/cosmic/infra/local"
cp "$repo/infra/local/install.sh" "$root/opt/cosmic/infra/local/install.sh"
echo "check: running install.sh --system-only inside the root"
install_start=$(date +%s)
if ! chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    bash /opt/cosmic/infra/local/install.sh --system-only; then
  echo "check: install.sh --system-only FAILED after $(elapsed)" >&2
  exit 1
fi
echo "check: install.sh took $(( $(date +%s) - install_start ))s"

# Each check is one shell line run inside the root; its name is what is reported missing.
checks=(
  "python3 venv|python3 -m venv /tmp/cosmic-venv-check && /tmp/cosmic-venv-check/bin/python -c 'import ensurepip'"
  "python3 headers|test -f \"\$(python3 -c 'import sysconfig; print(sysconfig.get_paths()[\"include\"])')/Python.h\""
  "java 17|java -version 2>&1 | grep -q 'version \"17'"
  "maven|mvn -v"
  "pg_config|pg_config --version"
  "postgresql server (initdb, pg_ctl)|test -x \"\$(pg_config --bindir)/initdb\" && test -x \"\$(pg_config --bindir)/pg_ctl\""
  "postgresql server headers (extension builds)|test -f \"\$(pg_config --includedir-server)/postgres.h\""
  "cmake|cmake --version"
  "cc|cc --version"
  "c++|c++ --version"
  "make|make --version"
  "clickhouse-server|command -v clickhouse-server"
  "clickhouse-client|command -v clickhouse-client"
  "chromium|command -v chromium"
  "git|git --version"
  "curl|curl --version"
  "ca-certificates|test -s /etc/ssl/certs/ca-certificates.crt"
)
missing=()
for entry in "${checks[@]}"; do
  name="${entry%%|*}"
  line="${entry#*|}"
  if chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      bash -c "$line" >/dev/null 2>&1; then
    echo "  ok       $name"
  else
    echo "  MISSING  $name"
    missing+=("$name")
  fi
done

if ((${#missing[@]})); then
  echo "check: missing after install.sh: ${missing[*]} ($(elapsed))" >&2
  exit 1
fi
echo "check: a minimal Debian 12 has everything after install.sh ($(elapsed))"
