#!/usr/bin/env bash
# Installs what Jinx builds and tests with, each part only when missing (a second run is a quiet
# no-op): the Debian packages, then the project-local Python venv .venv with the packages of
# the server tests and the load generator (tests/server/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(cmake ninja-build g++ pkg-config nlohmann-json3-dev libpcre2-dev libgtest-dev libgmock-dev
      libbenchmark-dev libcli11-dev libcpp-httplib-dev libedit-dev python3-pip python3-venv
      chromium chromium-driver libsqlite3-dev libhnswlib-dev libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# The venv is complete when its stamp equals the requirements file it was installed from.
venv=.venv
reqs=tests/server/requirements.txt
stamp=$venv/.jinx-requirements
if [ -x "$venv/bin/python" ] && cmp -s "$reqs" "$stamp"; then
  exit 0
fi
echo "setting up $venv (server test packages from $reqs)"
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then  # missing, or half made
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
cp "$reqs" "$stamp"
