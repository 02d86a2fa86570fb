#!/usr/bin/env bash
# Extras that are not Python packages: Leaflet + Leaflet.draw for the offline map (from the npm registry,
# unpacked into app/static, never committed) and, for the tests, Debian packages: Chromium for the browser
# test, PostgreSQL 15 and SLURM (slurm-wlm + munge) for the database and HPC-cluster tests.
set -euo pipefail
cd "$(dirname "$0")/.."
static=app/static
if [ ! -f "$static/leaflet/leaflet.js" ] || [ ! -f "$static/leaflet-draw/leaflet.draw.js" ]; then
  if command -v npm >/dev/null; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent leaflet@1.9.4 leaflet-draw@1.0.4 >/dev/null 2>&1)
    mkdir -p "$static/leaflet" "$static/leaflet-draw"
    tar -xzf "$tmp"/leaflet-1.9.4.tgz -C "$tmp" && cp -r "$tmp"/package/dist/* "$static/leaflet/" && rm -rf "$tmp/package"
    tar -xzf "$tmp"/leaflet-draw-1.0.4.tgz -C "$tmp" && cp -r "$tmp"/package/dist/* "$static/leaflet-draw/"
    rm -rf "$tmp"
    echo "[extras] leaflet assets in $static"
  else
    echo "[extras] npm not found: the map will load Leaflet from its CDN" >&2
  fi
fi
[ "${1:-}" = "--assets-only" ] && exit 0
# Debian packages for the tests: chromium (browser test), postgresql (a real PostgreSQL server on a loopback
# port) and slurm-wlm + munge (a one-node SLURM); tests/servers.py starts the servers in temporary folders.
# One `apt-get update`, and only when something is missing, so a second run returns at once.
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
{ [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ]; } || need+=(slurm-wlm)
[ -x /usr/sbin/munged ] || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[extras] installing Debian packages for the tests: ${need[*]} (one time, a few minutes)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "[extras] missing ${need[*]} and cannot apt-get install them (needs root and apt-get):" \
      "the browser / PostgreSQL / SLURM tests will skip" >&2
  fi
fi
