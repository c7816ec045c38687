#!/usr/bin/env bash
# System packages the project needs beyond PyPI, from Debian:
#   - Arabic book fonts: synthetic training lines and the test suite render with them;
#   - FriBiDi/HarfBuzz (libraqm): Pillow shapes Arabic with them, unshaped text otherwise;
#   - chromium: the browser tests drive it through Playwright (tests/service/browser);
#   - tesseract-ocr-ara (only with --bench): the peer the benchmarks compare against.
# Idempotent: installs only what is missing. Needs root or sudo and apt-get.
set -euo pipefail
packages=(fonts-hosny-amiri fonts-sil-scheherazade fonts-noto-core fonts-kacst fonts-kacst-one
          fonts-arabeyes fonts-sil-lateef fonts-farsiweb fonts-freefarsi libfribidi0 libraqm0 chromium)
if [ "${1:-}" = "--bench" ]; then
  packages+=(tesseract-ocr tesseract-ocr-ara)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "missing system packages (${missing[*]}) and no apt-get: install them by hand" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
