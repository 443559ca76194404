#!/bin/sh
# Installs the Debian packages the tests and the demo need, only when missing.
# `scripts/deps.sh bench` also installs what only `make bench` needs: the
# runtimes its figures compare with (runc, LXC). Needs root (apt-get); as
# another user it only reports what is missing.
set -eu
need=""
have() { command -v "$1" >/dev/null 2>&1; }
[ -x /bin/busybox ] || need="$need busybox-static"
have mksquashfs || need="$need squashfs-tools"
have iptables-legacy || need="$need iptables"
have unshare || need="$need util-linux"
have ip || need="$need iproute2"
have gcc || need="$need gcc"
# The static link of make build needs glibc's static library (the tests'
# builds) and musl (the shipped binaries, see the Makefile), with the
# kernel's headers.
{ have gcc && [ "$(gcc -print-file-name=libc.a)" != libc.a ]; } || need="$need libc6-dev"
have musl-gcc || need="$need musl-tools"
[ -d /usr/include/linux ] || need="$need linux-libc-dev"
# The bootloader tests check our environment files against the real tools:
# fw_printenv/fw_setenv (libubootenv) and grub-editenv.
have fw_printenv || need="$need libubootenv-tool"
have grub-editenv || need="$need grub-common"
# The control socket's end-to-end test talks to it with the real curl, as
# upstream's pvcontrol does.
have curl || need="$need curl"
# The xconnect dbus tests run a stock dbus-daemon and libdbus's dbus-send
# (the integration test binds them into its containers).
have dbus-daemon || need="$need dbus-daemon"
have dbus-send || need="$need dbus-bin"
# The boot test (integration/boot) boots pantavisor as a kernel's init in
# QEMU: the emulator, cpio for the initramfs, mkfs.ext4 -d for the storage
# image. Its kernel is Debian's, fetched with apt-get download.
have qemu-system-x86_64 || need="$need qemu-system-x86"
have cpio || need="$need cpio"
have mkfs.ext4 || need="$need e2fsprogs"
case "${1:-}" in
"") ;;
bench)
	have runc || need="$need runc"
	have lxc-start || need="$need lxc"
	# The tcp ingress figures compare with HAProxy (splicing) and socat.
	have haproxy || need="$need haproxy"
	have socat || need="$need socat"
	# The http ingress figures compare with nginx, loaded by wrk.
	have nginx || need="$need nginx-light"
	have wrk || need="$need wrk"
	;;
*)
	echo "usage: $0 [bench]" >&2
	exit 2
	;;
esac
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "missing Debian packages:$need (run as root to install them)" >&2
	exit 0
fi
echo "installing:$need"
export DEBIAN_FRONTEND=noninteractive
# Installing lxc would start its lxc-net service where an init system runs
# services: a bridge, dnsmasq and NAT rules in the host's network namespace.
# Nothing here may touch the host's network, so services are kept from
# starting for the duration of the install (policy-rc.d exit 101 = "action
# forbidden", honoured by invoke-rc.d and deb-systemd-invoke), unless a
# policy is already in place.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# scripts/deps.sh: no service starts during this install\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
	trap 'exit 130' INT TERM
fi
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need >/dev/null
