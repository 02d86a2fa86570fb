#!/usr/bin/env bash
# Extras that are not Python packages: Leaflet + Leaflet.draw for the offline map (from the npm registry,
# unpacked into app/static, never committed) and, for the tests, Debian's Chromium for the browser test.
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
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[extras] installing Debian chromium for the browser test (one time, ~2 minutes)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[extras] /usr/bin/chromium missing and cannot apt-get install it: the browser test will skip" >&2
  fi
fi
