#!/usr/bin/env bash
# Builds TimescaleDB from its release source and installs it into the system PostgreSQL,
# unless that PostgreSQL already has the extension. install.sh runs it; it can also run
# on its own:
#
#   bash infra/local/timescaledb.sh            # build once (cached), install, or do nothing
#
# Source: COSMIC_TIMESCALEDB_SOURCE, a path (relative paths are taken from the repository
# root) or an http(s) URL of the release tarball; default: the project's own release
# tarball on GitHub. Its sha256 must be the one below (COSMIC_TIMESCALEDB_SHA256 overrides
# it for another release, together with COSMIC_TIMESCALEDB_VERSION).
# The patches in infra/local/timescaledb-patches/ (COSMIC_TIMESCALEDB_PATCHES) are applied
# in name order; each says why. The build lives under the cache folder (COSMIC_CACHE_DIR;
# /var/cache/cosmic as root, else $XDG_CACHE_HOME/cosmic), one folder per release,
# PostgreSQL major and patch set, so it is built once. What this script installed is
# recorded beside the control file (timescaledb.cosmic-build): a later run with that
# build installed changes nothing, one with an older build of ours replaces it, and a
# TimescaleDB installed some other way is left alone. COSMIC_TIMESCALEDB_FORCE=1
# reinstalls regardless. Files are replaced by rename, so a running server keeps the
# libraries it has loaded and its new processes load the new ones.
#
# Exit status: 0 when the extension is installed (now or before); 3 when it could not be
# built or installed: the reason is printed, nothing half-built is installed, and the
# platform keeps using its native-partitioning fallback.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
version="${COSMIC_TIMESCALEDB_VERSION:-2.28.3}"
sha256="${COSMIC_TIMESCALEDB_SHA256:-ec2f7de0ba53a473c01e0a57e09053898c6b1f7487228caff0f1d31c8cb2dedb}"
source="${COSMIC_TIMESCALEDB_SOURCE:-https://github.com/timescale/timescaledb/archive/refs/tags/$version.tar.gz}"

say() { echo "timescaledb: $*"; }
give_up() {
  echo "timescaledb: NOT installed: $*" >&2
  echo "timescaledb: the platform uses its native-partitioning fallback until this is fixed" >&2
  exit 3
}

# The PostgreSQL to build for: COSMIC_PG_MAJOR's, else the newest with a server.
pg_config=""
if [[ -n "${COSMIC_PG_MAJOR:-}" && -x "/usr/lib/postgresql/$COSMIC_PG_MAJOR/bin/pg_config" ]]; then
  pg_config="/usr/lib/postgresql/$COSMIC_PG_MAJOR/bin/pg_config"
elif command -v pg_config >/dev/null; then
  pg_config="$(command -v pg_config)"
fi
[[ -n "$pg_config" ]] || give_up "no pg_config (install the PostgreSQL server headers)"
pg_version="$("$pg_config" --version)"   # "PostgreSQL 15.20 (Debian ...)"
pg_major="$(sed -E 's/^PostgreSQL ([0-9]+).*/\1/' <<<"$pg_version")"
pkglibdir="$("$pg_config" --pkglibdir)"
sharedir="$("$pg_config" --sharedir)"

installed_version() {
  # The version the control file installs, if its library is there too.
  local control="$sharedir/extension/timescaledb.control" v
  [[ -f "$control" ]] || return 1
  v="$(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" "$control")"
  [[ -n "$v" && -f "$pkglibdir/timescaledb-$v.so" && -f "$pkglibdir/timescaledb.so" ]] || return 1
  echo "$v"
}

patches_dir="${COSMIC_TIMESCALEDB_PATCHES:-$repo/infra/local/timescaledb-patches}"
patches=()
if [[ -d "$patches_dir" ]]; then
  mapfile -t patches < <(find "$patches_dir" -maxdepth 1 -name '*.patch' | LC_ALL=C sort)
fi
build_id="$version"
if ((${#patches[@]})); then
  build_id="$version+$(cat "${patches[@]}" | sha256sum | cut -c1-12)"
fi
marker="$sharedir/extension/timescaledb.cosmic-build"

if [[ "${COSMIC_TIMESCALEDB_FORCE:-0}" != 1 ]] && have="$(installed_version)"; then
  if [[ ! -f "$marker" ]]; then
    say "$have already installed for PostgreSQL $pg_major ($pkglibdir), not by this script:" \
        "left as it is"
    exit 0
  fi
  if [[ "$(cat "$marker")" == "$build_id" ]]; then
    say "$have already installed for PostgreSQL $pg_major ($pkglibdir)"
    exit 0
  fi
  say "replacing our earlier build $(cat "$marker") with $build_id"
fi

if [[ -n "${COSMIC_CACHE_DIR:-}" ]]; then
  cache="$COSMIC_CACHE_DIR"
elif [[ $(id -u) -eq 0 ]]; then
  cache=/var/cache/cosmic
else
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/cosmic"
fi
work="$cache/timescaledb/${build_id/+/-}-pg$pg_major"
tarball="$cache/timescaledb/timescaledb-$version.tar.gz"
log="$work.log"
mkdir -p "$cache/timescaledb"

for tool in cmake make cc tar sha256sum; do
  command -v "$tool" >/dev/null || give_up "'$tool' is missing (install.sh installs it with apt)"
done
[[ -f "$("$pg_config" --includedir-server)/postgres.h" ]] \
  || give_up "no server headers for PostgreSQL $pg_major (postgresql-server-dev-$pg_major)"

check_sum() {
  [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$sha256" ]]
}

if [[ ! -f "$tarball" ]] || ! check_sum "$tarball"; then
  case "$source" in
    http://*|https://*)
      say "downloading $source"
      curl -fsSL --retry 3 -o "$tarball.part" "$source" || give_up "download of $source failed"
      ;;
    *)
      path="$source"
      [[ "$path" == /* ]] || path="$repo/$path"
      [[ -f "$path" ]] || give_up "no source tarball at $path (COSMIC_TIMESCALEDB_SOURCE)"
      cp "$path" "$tarball.part"
      ;;
  esac
  if ! check_sum "$tarball.part"; then
    got="$(sha256sum "$tarball.part" | cut -d' ' -f1)"
    rm -f "$tarball.part"
    give_up "$source has sha256 $got, not $sha256"
  fi
  mv "$tarball.part" "$tarball"
fi

# A build folder is only trusted when its last step finished (the marker file).
if [[ ! -f "$work/.built" ]]; then
  say "building $version for PostgreSQL $pg_major under $work (log: $log)"
  start=$(date +%s)
  rm -rf "$work"
  mkdir -p "$work"
  tar -xzf "$tarball" -C "$work" --strip-components=1
  for p in "${patches[@]}"; do
    if ! patch -d "$work" -p1 --forward --batch <"$p" >>"$log" 2>&1; then
      tail -n 5 "$log" | sed 's/^/timescaledb:   /' >&2
      give_up "patch $(basename "$p") does not apply to $version (full log: $log)"
    fi
    say "applied $(basename "$p")"
  done
  if ! ( cd "$work" \
         && ./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
              -DCMAKE_BUILD_TYPE=Release -DPG_CONFIG="$pg_config" \
         && make -C build -j"${COSMIC_BUILD_JOBS:-2}" ) >"$log" 2>&1; then
    tail -n 15 "$log" | sed 's/^/timescaledb:   /' >&2
    give_up "the build failed (full log: $log)"
  fi
  touch "$work/.built"
  say "built in $(( $(date +%s) - start ))s"
fi

sudo=""
if [[ $(id -u) -ne 0 ]] && [[ ! -w "$pkglibdir" ]]; then
  command -v sudo >/dev/null || give_up "installing into $pkglibdir needs root (or sudo)"
  sudo="sudo"
fi
# Install into a staging folder, then move each file into place by rename: a running
# PostgreSQL keeps the libraries it has mapped, and nothing is half-written.
stage="$work/stage"
rm -rf "$stage"
if ! make -C "$work/build" install DESTDIR="$stage" >>"$log" 2>&1; then
  tail -n 15 "$log" | sed 's/^/timescaledb:   /' >&2
  give_up "make install failed (full log: $log)"
fi
while IFS= read -r -d '' file; do
  target="${file#"$stage"}"
  $sudo install -D -m "$(stat -c %a "$file")" "$file" "$target.cosmic-new" \
    && $sudo mv -f "$target.cosmic-new" "$target" \
    || give_up "could not install $target"
done < <(find "$stage" -type f -print0)
echo "$build_id" | $sudo tee "$marker.cosmic-new" >/dev/null && $sudo mv -f "$marker.cosmic-new" "$marker"
have="$(installed_version)" || give_up "make install finished but $pkglibdir has no timescaledb library"
say "$have ($build_id) installed for PostgreSQL $pg_major: a PostgreSQL started before" \
    "must restart to preload it (the local stack sets shared_preload_libraries when it starts)"
