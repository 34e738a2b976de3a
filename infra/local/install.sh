#!/usr/bin/env bash
# Installs everything the local stack and the tests need on Debian/Ubuntu.
# Idempotent: a second run changes nothing and takes seconds.
#
#   bash infra/local/install.sh                 # system packages, .venv, Kafka JARs
#   bash infra/local/install.sh --system-only   # just the apt packages
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
system_only=false
[[ "${1:-}" == "--system-only" ]] && system_only=true

packages=(openjdk-17-jre-headless maven postgresql postgresql-contrib
          clickhouse-server clickhouse-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v java >/dev/null; then missing+=(openjdk-17-jre-headless); fi
if ((${#missing[@]})); then
  echo "install: apt packages: ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages start their own clusters/servers where they can; ours run from the
  # state folder on other ports, so theirs are left alone.
fi
$system_only && exit 0

python="${PYTHON:-python3}"
if [[ ! -x "$repo/.venv/bin/python" ]]; then
  echo "install: creating $repo/.venv"
  "$python" -m venv "$repo/.venv"
fi
"$repo/.venv/bin/python" -m pip install -q --upgrade pip
"$repo/.venv/bin/python" -m pip install -q -e "$repo[dev,spark,flink]"

echo "install: resolving Kafka JARs (cached after the first time)"
"$repo/.venv/bin/cosmic" stack install --no-system
echo "install: done"
