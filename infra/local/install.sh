#!/usr/bin/env bash
# Installs everything the local stack and the tests need, from a minimal system up.
# Idempotent: a second run changes nothing and takes seconds.
# TimescaleDB, which Debian does not package, is built from its release source once
# (infra/local/timescaledb.sh: COSMIC_TIMESCALEDB_SOURCE, ~2 minutes on 2 cores).
#
#   bash infra/local/install.sh                 # system packages, .venv, Kafka JARs
#   bash infra/local/install.sh --system-only   # just the system packages
#
# Supported: Debian 12 (bookworm), proved from a bare `debootstrap --variant=minbase`
# root by infra/local/check-minimal-debian.sh. Ubuntu 24.04 is attempted with the same
# package names (PostgreSQL 16 there) but is untested; note that its `chromium` is a
# snap wrapper, so the browser tests need a Chromium from elsewhere. Ubuntu 22.04 and
# Debian 11 cannot work: their Python is older than the 3.11 the project requires.
#
# Without apt (Fedora, Arch, macOS...) nothing is installed: the script checks that
# these are present and lists what is not, then goes on to the Python half:
#   Python >= 3.11 with venv and headers, a C/C++ compiler, make, cmake, Java 17 (JRE),
#   Maven, PostgreSQL 15+ server binaries with pg_config and server headers,
#   ClickHouse server and client, Chromium, Node.js 18+ with npm, git, curl, CA certificates.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
system_only=false
[[ "${1:-}" == "--system-only" ]] && system_only=true

# The PostgreSQL major release each supported system packages (its server-dev
# package builds TimescaleDB); COSMIC_PG_MAJOR overrides it.
os_id="" os_version=""
if [[ -r /etc/os-release ]]; then
  os_id="$(. /etc/os-release && echo "${ID:-}")"
  os_version="$(. /etc/os-release && echo "${VERSION_ID:-}")"
fi
case "$os_id:$os_version" in
  debian:12) pg_major=15 ;;
  ubuntu:24.04) pg_major=16
    echo "install: Ubuntu 24.04 is untested; Debian 12 is the supported system" >&2 ;;
  *) pg_major="" ;;
esac
pg_major="${COSMIC_PG_MAJOR:-$pg_major}"

missing_commands() {
  # What the platform and its tests run, by command; prints the missing ones.
  local py="${PYTHON:-python3}"
  command -v "$py" >/dev/null && "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || echo "python>=3.11-with-venv"
  command -v "$py" >/dev/null && [[ -f "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]] \
    || echo "python-headers"
  local c
  for c in cc c++ make cmake java mvn pg_config clickhouse-client chromium node npm git curl prometheus promtool; do
    command -v "$c" >/dev/null || echo "$c"
  done
  # Debian puts it in /usr/sbin, which a user's PATH does not hold.
  command -v clickhouse-server >/dev/null || [[ -x /usr/sbin/clickhouse-server ]] \
    || echo "clickhouse-server"
  if command -v pg_config >/dev/null; then
    [[ -x "$(pg_config --bindir)/initdb" ]] || echo "postgresql-server"
    [[ -f "$(pg_config --includedir-server)/postgres.h" ]] || echo "postgresql-server-headers"
  fi
}

if command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; then
  if [[ -z "$pg_major" ]]; then
    echo "install: $os_id $os_version is not a system this script knows; set COSMIC_PG_MAJOR" \
         "to its PostgreSQL major release to try anyway" >&2
    exit 1
  fi
  packages=(
    ca-certificates curl git
    python3 python3-venv python3-dev            # the .venv, and wheels built from source
    build-essential cmake                       # C/C++ (numba's tests, TimescaleDB's build)
    openjdk-17-jre-headless maven               # Kafka, Flink and Spark JARs
    postgresql postgresql-contrib "postgresql-server-dev-$pg_major"
    clickhouse-server clickhouse-client
    chromium                                    # the browser tests (driven by Playwright)
    prometheus                                  # the stack's Prometheus, and promtool
  )
  # Node.js and npm bundle the browser viewer (scripts/build-viewer). One already on PATH
  # (nodesource, nvm) is used as it is: Debian's npm package conflicts with nodesource's.
  command -v npm >/dev/null || packages+=(nodejs npm)
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Never move the installed server: postgresql-server-dev-N of a newer minor release pulls
  # postgresql-N up with it, underneath a running server (which then fails to load
  # plpgsql.so). Ask for the headers of the server's own version instead.
  server_version="$(dpkg-query -W -f='${Version}' "postgresql-$pg_major" 2>/dev/null || true)"
  if [[ -n "$server_version" ]]; then
    for i in "${!missing[@]}"; do
      if [[ "${missing[$i]}" == "postgresql-server-dev-$pg_major" ]]; then
        missing[i]="postgresql-server-dev-$pg_major=$server_version"
      fi
    done
  fi
  if ((${#missing[@]})); then
    echo "install: apt packages: ${missing[*]}"
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then
      command -v sudo >/dev/null || { echo "install: run as root (or install sudo)" >&2; exit 1; }
      sudo="sudo"
    fi
    $sudo apt-get update -qq
    # Debian's packages start their own clusters/servers where they can; ours run from the
    # state folder on other ports, so theirs are left alone.
    if ! $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
      echo "install: apt-get install failed${server_version:+ (the server headers must match" \
           "the installed postgresql-$pg_major $server_version; if apt no longer offers that" \
           "version, upgrade the server first, while it is stopped)}" >&2
      exit 1
    fi
    # postgresql-server-dev pulls PostgreSQL up to its own minor release; a server already
    # running from the old binaries then fails to load the new libraries (plpgsql.so).
    if pgrep -f "/usr/lib/postgresql/.*/bin/postgres" >/dev/null 2>&1; then
      echo "install: PostgreSQL packages may have changed under a running server:" \
           "restart it (cosmic stack down && cosmic stack up)" >&2
    fi
  fi
fi

mapfile -t absent < <(missing_commands)
if ((${#absent[@]})); then
  echo "install: still missing: ${absent[*]}" >&2
  command -v apt-get >/dev/null || echo "install: no apt here: install those with the" \
    "system's package manager (see the list at the top of $0)" >&2
  exit 1
fi
# TimescaleDB is not packaged for Debian: build it once from its release source. A build
# that fails says why and installs nothing; the platform then uses its native fallback
# (CI sets COSMIC_TIMESCALEDB_REQUIRED=1: there a failed build fails the install).
if [[ -n "$pg_major" ]] || command -v pg_config >/dev/null; then
  if ! COSMIC_PG_MAJOR="$pg_major" bash "$repo/infra/local/timescaledb.sh"; then
    [[ "${COSMIC_TIMESCALEDB_REQUIRED:-0}" == 1 ]] && exit 1
    echo "install: going on without TimescaleDB (see above)" >&2
  fi
fi
$system_only && exit 0

python="${PYTHON:-python3}"
if [[ ! -x "$repo/.venv/bin/python" ]]; then
  echo "install: creating $repo/.venv"
  "$python" -m venv "$repo/.venv"
fi
"$repo/.venv/bin/python" -m pip install -q --upgrade pip
"$repo/.venv/bin/python" -m pip install -q -e "$repo[dev,spark,flink]"
echo "install: compiling the gateway's protobuf contract"
PYTHON="$repo/.venv/bin/python" "$repo/scripts/gen-protos"
echo "install: bundling the browser viewer (npm ci from the lockfile; cached after the first time)"
"$repo/scripts/build-viewer"

echo "install: resolving Kafka JARs (cached after the first time)"
"$repo/.venv/bin/cosmic" stack install --no-system
echo "install: done"
