#!/bin/sh
# Builds the demo revision of examples/demo into examples/build/storage as a
# device keeps it (trails/0/.pvr/json + content-addressed objects), validates
# it with the real objects (lxc.container.conf translation, sha256 of every
# object), then runs it in appengine mode in the foreground. Ctrl-C stops it.
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh
src=examples/demo
out=examples/build
storage=$out/storage
rm -rf "$out"
mkdir -p "$storage/objects" "$storage/trails/0/.pvr" "$out/rootfs"

# One busybox root for every demo container (Debian busybox-static).
root=$out/rootfs/base
mkdir -p "$root/bin" "$root/sbin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/www"
cp /bin/busybox "$root/bin/busybox"
for app in $(/bin/busybox --list); do [ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"; done
# The web container runs a small static Go program (examples/pvapp).
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$root/bin/pvapp" ./examples/pvapp
mkdir -p "$root/pantavisor"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
echo '<h1>Hello from a Pantavisor demo container</h1>' > "$root/www/index.html"

put() { # put FILE -> prints its sha256 after storing it as an object
	sha=$(sha256sum "$1" | cut -d' ' -f1)
	cp "$1" "$storage/objects/$sha"
	echo "$sha"
}
mksquashfs "$root" "$out/root.squashfs" -noappend -quiet -comp gzip >/dev/null
rootsha=$(put "$out/root.squashfs")
state=$(cat "$src/state.json")
for name in assets shell web; do
	confsha=$(put "$src/$name/lxc.container.conf")
	state=$(printf '%s' "$state" | sed -e "s/\"@lxc:$name\"/\"$confsha\"/" -e "s/\"@squashfs:$name\"/\"$rootsha\"/")
done
printf '%s\n' "$state" > "$storage/trails/0/.pvr/json"
echo "demo revision built in $storage"
bin/pantavisor validate --appengine --warnings "$storage/trails/0"

run=$out/run
cat <<MSG

Starting the device (appengine mode). In another terminal, as root:

    bin/pvcontrol -s $run/pv-ctrl ls        # containers, their status and pid
    bin/pvcontrol -s $run/pv-ctrl groups ls # groups in start order
    bin/pvcontrol -s $run/pv-ctrl tree      # the live actor tree
    tail -f $storage/logs/0/shell/console.log

Press Ctrl-C here to stop it: containers stop in reverse group order.

MSG
[ -n "${PV_DEMO_NO_RUN:-}" ] && exit 0
exec bin/pantavisor appengine --storage "$storage" --run "$run"
