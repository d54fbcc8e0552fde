#!/usr/bin/env bash
# Install the Debian (bookworm) packages zcnet needs to build, test and
# benchmark (and any package named on the command line). Idempotent: it installs only what is missing, and does nothing
# (not even `apt-get update`) when everything is present.
set -euo pipefail

# nftables, clang and libbpf-dev (bpf_helpers.h): the impaired-link test;
# curl: the `zcnet ingest` tests; libclang-rt-dev (libFuzzer): the fuzz
# target of its HTTP parser.
pkgs=(gcc make cmake pkg-config liburing-dev libcmocka-dev iproute2 procps
	nftables clang libbpf-dev curl libclang-rt-dev "$@") # extra: `deps.sh valgrind`

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "zcnet: missing packages: ${missing[*]} (run as root or install them)" >&2
	exit 1
fi
echo "zcnet: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Packages with a daemon (nginx, iperf3's) must not start it on install: the
# benchmarks run their own instances on loopback. policy-rc.d's 101 says so
# to invoke-rc.d; one already present is the machine owner's and stays.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
