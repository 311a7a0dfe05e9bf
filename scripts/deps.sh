#!/usr/bin/env bash
# Install the Debian packages qforge needs to build and test, if missing.
# Idempotent: does nothing when everything is present. Needs root (or sudo)
# only when something must be installed.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config
  libpcre2-dev libhwloc-dev libcjson-dev libxxhash-dev
  libmicrohttpd-dev libcurl4-openssl-dev libsqlite3-dev libzstd-dev libyaml-dev
  libxml2-dev libpoppler-glib-dev libarchive-dev libncurses-dev
  curl jq zip nodejs npm tmux
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
  # the aarch64 model tests under qemu link the arm64 builds (multiarch)
  libpcre2-dev:arm64 libhwloc-dev:arm64 libcjson-dev:arm64 libxxhash-dev:arm64
)

# Tools that may come from elsewhere (e.g. a NodeSource node with its own
# npm): present on PATH counts as installed, whatever package provided it.
declare -A CMD=([nodejs]=node [npm]=npm [curl]=curl [qemu-user]=qemu-aarch64
                [gcc-aarch64-linux-gnu]=aarch64-linux-gnu-gcc)

missing=()
for p in "${PKGS[@]}"; do
  if [ -n "${CMD[$p]:-}" ] && command -v "${CMD[$p]}" >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "qforge: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "qforge: not root and no sudo: run as root:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if printf '%s\n' "${missing[@]}" | grep -q ':arm64$' && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
