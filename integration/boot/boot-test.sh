#!/bin/bash
# The QEMU boot test (issue 16): boots a real Debian kernel with pantavisor
# as the initramfs's /init, its storage on an emulated NVMe disk (ext4,
# PV_STORAGE_DEVICE), and checks on the serial console that the revision's
# containers come up and that `pvcontrol cmd poweroff` from a management
# container powers the machine off in order. Software emulation (TCG):
# KVM is used only when it works (these machines' nested KVM does not).
#
# usage: integration/boot/boot-test.sh   (after make build; needs root for
# the /dev/console node of the initramfs)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=$root/bin/boot
cache=$root/bin/boot-cache
rm -rf "$work"
mkdir -p "$work" "$cache"

# The kernel: Debian's cloud flavour (NVMe and ext4 built in; loop,
# squashfs and overlay as modules, loaded by pantavisor from
# /etc/modules-load.d). Downloaded once into bin/boot-cache.
if ! ls "$cache"/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1; then
	pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
	(cd "$cache" && apt-get download "$pkg" >/dev/null)
fi
rm -rf "$cache/x"
dpkg-deb -x "$(ls "$cache"/linux-image-*-cloud-amd64_*.deb | head -1)" "$cache/x"
kver=$(ls "$cache/x/lib/modules" | head -1)
kernel=$cache/x/boot/vmlinuz-$kver

# The revision: two containers on one busybox root; "ctl" (mgmt, in the
# second group, so it starts once "app" has) powers the device off
# through the control socket.
rev=$work/rev
rootdir=$work/rootfs
storage=$work/storage
mkdir -p "$rootdir"/{bin,sbin,etc,proc,sys,dev,tmp,run,pantavisor} "$storage/objects" "$storage/trails/0/.pvr" "$rev"
cp /bin/busybox "$rootdir/bin/busybox"
for app in $(/bin/busybox --list); do [ "$app" = busybox ] || ln -sf busybox "$rootdir/bin/$app"; done
cp bin/pvcontrol "$rootdir/bin/pvcontrol"
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootdir/etc/passwd"
echo 'root:x:0:' >"$rootdir/etc/group"
mksquashfs "$rootdir" "$rev/root.squashfs" -noappend -quiet -comp gzip >/dev/null
put() { # put FILE: stores it as an object, prints its sha256
	local sha
	sha=$(sha256sum "$1" | cut -d' ' -f1)
	cp "$1" "$storage/objects/$sha"
	echo "$sha"
}
conf() { # conf NAME CMD
	cat <<CONF
lxc.tty.max = 8
lxc.pty.max = 1024
lxc.cgroup.devices.allow = a
lxc.rootfs.path = overlayfs:/volumes/$1/root.squashfs:/volumes/$1/lxc-overlay/upper
lxc.init.cmd = $2
lxc.init.cwd = /
lxc.environment = PATH=/bin:/sbin
lxc.namespace.keep = user net ipc
lxc.mount.auto = proc sys:rw cgroup
lxc.mount.entry = tmpfs run tmpfs rw,nodev,relatime,mode=755 0 0
lxc.uts.name = $1
CONF
}
conf app "/bin/sh \"-c\" \"trap 'exit 0' TERM; echo app up; while true; do sleep 1; done\"" >"$rev/app.conf"
conf ctl "/bin/sh \"-c\" \"trap 'exit 0' TERM; sleep 1; pvcontrol -s /pantavisor/pv-ctrl ls; pvcontrol -s /pantavisor/pv-ctrl cmd poweroff boot-test-done; while true; do sleep 1; done\"" >"$rev/ctl.conf"
echo "placeholder: the bootloader loads the kernel, not pantavisor" >"$rev/kernel.img"
rootsha=$(put "$rev/root.squashfs")
appsha=$(put "$rev/app.conf")
ctlsha=$(put "$rev/ctl.conf")
ksha=$(put "$rev/kernel.img")
run() { # run NAME GROUP ROLES
	printf '{"#spec": "service-manifest-run@1", "name": "%s", "type": "lxc", "config": "lxc.container.conf", "root-volume": "root.squashfs", "volumes": [], "group": "%s", "roles": [%s], "storage": {"lxc-overlay": {"persistence": "boot"}}}' "$1" "$2" "$3"
}
cat >"$storage/trails/0/.pvr/json" <<JSON
{
  "#spec": "pantavisor-service-system@1",
  "bsp/run.json": {"addons": [], "linux": "kernel.img", "initrd": "kernel.img"},
  "bsp/kernel.img": "$ksha",
  "device.json": {"groups": [
    {"name": "root", "status_goal": "STARTED", "restart_policy": "system", "timeout": 60},
    {"name": "app", "status_goal": "STARTED", "restart_policy": "container", "timeout": 60}
  ]},
  "app/run.json": $(run app root ''),
  "app/lxc.container.conf": "$appsha",
  "app/root.squashfs": "$rootsha",
  "ctl/run.json": $(run ctl app '"mgmt"'),
  "ctl/lxc.container.conf": "$ctlsha",
  "ctl/root.squashfs": "$rootsha"
}
JSON
bin/pantavisor validate "$storage/trails/0"
rm -f "$work/storage.img"
mkfs.ext4 -q -L pvstorage -d "$storage" "$work/storage.img" 128M

# The initramfs: pantavisor as /init, pvinit beside it, the modules.
ird=$work/initramfs
mkdir -p "$ird"/{dev,proc,sys,run,etc/modules-load.d,storage,bin,sbin}
cp bin/pantavisor "$ird/init"
cp bin/pvinit "$ird/pvinit"
mknod -m 600 "$ird/dev/console" c 5 1
mknod -m 666 "$ird/dev/null" c 1 3
cat >"$ird/etc/pantavisor.config" <<CONF
PV_STORAGE_DEVICE=/dev/nvme0n1
PV_STORAGE_FSTYPE=ext4
PV_STORAGE_WAIT=20
PV_BOOTLOADER_TYPE=uboot
CONF
printf 'loop\nsquashfs\noverlay\n' >"$ird/etc/modules-load.d/pantavisor.conf"
mods=$ird/lib/modules/$kver
mkdir -p "$mods"
for m in drivers/block/loop.ko fs/squashfs/squashfs.ko fs/overlayfs/overlay.ko; do
	mkdir -p "$mods/kernel/$(dirname "$m")"
	cp "$cache/x/lib/modules/$kver/kernel/$m" "$mods/kernel/$m"
done
cp "$cache/x/lib/modules/$kver/modules.builtin" "$mods/"
/bin/busybox depmod -b "$ird" "$kver"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initramfs.cpio.gz")

accel=tcg
if [ -w /dev/kvm ] && (timeout 20 qemu-system-x86_64 -accel kvm -cpu host -m 64 -nographic -no-reboot \
	-kernel "$kernel" -append "console=ttyS0 panic=-1 rdinit=/nonexistent" </dev/null >/dev/null 2>&1) 2>/dev/null; then
	accel=kvm
fi
echo "boot-test: kernel $kver, accel $accel, initramfs $(stat -c %s "$work/initramfs.cpio.gz") bytes"
log=$work/console.log
start=$(date +%s.%N)
set +e
timeout 170 qemu-system-x86_64 -accel "$accel" -m 512 -smp 2 -nographic -no-reboot \
	-kernel "$kernel" -initrd "$work/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 loglevel=4" \
	-drive file="$work/storage.img",if=none,id=pvdisk,format=raw -device nvme,serial=pvstorage,drive=pvdisk \
	</dev/null >"$log" 2>&1
code=$?
set -e
end=$(date +%s.%N)
# The console is a terminal: the log is coloured (tint). Checked without.
plain=$work/console.txt
sed -r 's/\x1b\[[0-9;?]*[a-zA-Z]//g' "$log" >"$plain"
fails=0
check() { # check WHAT PATTERN
	if grep -qE "$2" "$plain"; then echo "ok: $1"; else echo "FAIL: $1 (no /$2/ in the console)"; fails=$((fails + 1)); fi
}
check "storage mounted from the NVMe disk" 'storage mounted.*nvme0n1'
check "modules loaded" 'modules loaded'
check "app started" 'container started.*container=app'
check "ctl started" 'container started.*container=ctl'
check "power-off requested through the control socket" 'stopping.*power-off.*boot-test-done'
check "pantavisor stopped in order" 'pantavisor stopped'
check "PID 1 powered off" 'pantavisor: powering off'
check "the kernel powered down" 'reboot: Power down'
if [ "$code" != 0 ]; then echo "FAIL: qemu exited with $code"; fails=$((fails + 1)); fi
echo "--- boot figures"
echo "wall time, qemu start to power-off: $(awk "BEGIN{printf \"%.1f\", $end - $start}") s ($accel)"
# Kernel time at /init's first log line is not printed (loglevel); the
# revision's own figure is pantavisor's "revision booted took=".
grep -oE 'revision booted.*took=[^ ]+' "$plain" | sed 's/^/boot: /' || true
echo "initramfs: $(stat -c %s "$work/initramfs.cpio.gz") bytes"
if [ "$fails" != 0 ]; then
	echo "--- console"
	cat "$plain"
	echo "boot-test: $fails failed"
	exit 1
fi
echo "boot-test: passed"
