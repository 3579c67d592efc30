#!/usr/bin/env bash
# Installs the Debian packages that `make test` needs from the system, where they are missing.
#
# Why each is needed:
#   libxcb-icccm4 libxcb-keysyms1  Qt's xcb platform plugin links them; the PyInstaller/.deb build
#                                  (tests/packaging) resolves the plugin's libraries with ldd and
#                                  refuses a bundle whose libraries are missing.
#   prometheus                     the Prometheus source's tests start a real server (and promtool
#                                  writes days of history into its TSDB) on loopback.
#   slurm-wlm munge                the Slurm backend's tests configure and start a single-node Slurm
#                                  (munged, slurmctld, slurmd) on loopback, as root.
# Installing them starts no daemon here (no init system); the tests start and stop their own.
# As root (CI, a fresh machine) it runs apt-get; otherwise it prints the command to run and fails,
# so nobody is left guessing why the packaging tests fail.
set -euo pipefail

packages=(libxcb-icccm4 libxcb-keysyms1 prometheus slurm-wlm munge)

command -v dpkg-query >/dev/null 2>&1 || {
    echo "system-packages: not a Debian/Ubuntu system (no dpkg-query): install the equivalents of" \
        "${packages[*]} with your package manager" >&2
    exit 0
}

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "system-packages: the tests need these Debian packages, which are missing: ${missing[*]}" >&2
    echo "system-packages: install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

echo "system-packages: installing ${missing[*]} (apt-get, as root)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
