#!/usr/bin/env bash
# Installs what runcell needs on a Debian 12 machine, and nothing when it is all present.
# Debian packages via apt-get (as root), JavaScript packages via `npm ci`, then the build.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  python3-ipykernel python3-jupyter-client python3-numpy python3-pandas python3-matplotlib
  python3-nbformat jupyter-nbconvert bubblewrap
)
# `--bench`: also the reference tools the benchmarks compare against (Jupyter Server).
if [[ "${1:-}" == "--bench" ]]; then
  DEBIAN_PACKAGES+=(python3-jupyter-server)
fi

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# npm ci only when the lockfile changed since the last install.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

# Build when any source is newer than the last build.
if [[ ! -f dist/cli/main.js ]] || [[ -n $(find src tsconfig.json tsconfig.build.json package.json -newer dist/cli/main.js -print -quit) ]]; then
  echo "setup: building" >&2
  npx tsc -p tsconfig.build.json
  chmod +x dist/cli/main.js
  touch dist/cli/main.js
fi
