// Package rootfs prepares and tears down a container's root filesystem the
// way upstream Pantavisor does: the root volume (a squashfs object) is
// attached to a loop device and mounted read-only, and an overlayfs with a
// writable upper layer is mounted on top of it. The upper layer lives on a
// tmpfs private to the container (persistence "boot"; it is detached from
// the mount table once the overlay holds it, so it is reachable through the
// overlay only) or in a directory the caller names (persistence "revision"
// and "permanent", typically under <storage>/disks/...). A plain directory is accepted instead of a squashfs
// image, for development. Extra volumes (more squashfs images) are
// loop-mounted read-only at mountpoints the caller chooses.
//
// With Options.Lowers, the squashfs mounts are shared: one loop device and
// one read-only squashfs mount per image file, reference-counted across
// every root and volume that uses it, so an xz image is decompressed once
// into one page cache rather than once per container (and per fresh
// mount). Only the overlay and its upper layer are per root. The last
// user's Unmount unmounts the shared mount. Without Lowers each root
// mounts its own, as before.
//
// The package is mechanism only: it does not know about revisions, storage
// layout or containers. It uses mount(2) and the loop ioctls directly and
// never shells out to mount or losetup.
package rootfs
