#!/bin/sh
# Makes DIR the kernel-header directory of musl-gcc builds (make build):
# musl-gcc searches only musl's own headers, and libcontainer's nsenter
# and the reaper include the kernel's (linux/, asm/, asm-generic/), which
# Debian ships in linux-libc-dev. Without musl-gcc it says what the build
# falls back to and changes nothing.
set -eu
dir=${1:?usage: $0 DIR}
if ! command -v musl-gcc >/dev/null 2>&1; then
	echo "musl-gcc not found: linking with glibc, whose static start-up costs each container start ~0.7 ms of CPU more (scripts/deps.sh installs musl-tools)" >&2
	exit 0
fi
arch=$(gcc -dumpmachine)
for h in /usr/include/linux /usr/include/asm-generic "/usr/include/$arch/asm"; do
	if [ ! -d "$h" ]; then
		echo "kernel headers missing ($h): apt-get install linux-libc-dev" >&2
		exit 1
	fi
done
mkdir -p "$dir"
ln -sfn /usr/include/linux "$dir/linux"
ln -sfn /usr/include/asm-generic "$dir/asm-generic"
ln -sfn "/usr/include/$arch/asm" "$dir/asm"
