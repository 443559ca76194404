#!/bin/sh
# Installs the Debian packages the tests and the demo need, only when missing.
# Needs root (apt-get); as another user it only reports what is missing.
set -eu
need=""
have() { command -v "$1" >/dev/null 2>&1; }
[ -x /bin/busybox ] || need="$need busybox-static"
have mksquashfs || need="$need squashfs-tools"
have iptables-legacy || need="$need iptables"
have unshare || need="$need util-linux"
have ip || need="$need iproute2"
have gcc || need="$need gcc"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "missing Debian packages:$need (run as root to install them)" >&2
	exit 0
fi
echo "installing:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need >/dev/null
