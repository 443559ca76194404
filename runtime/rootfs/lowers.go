package rootfs

import "sync"

// Lowers shares read-only squashfs mounts between the roots and volumes
// that use the same image. Each squashfs superblock has its own page
// cache, and an xz image is decompressed into it on every read that
// misses: twenty containers on one object with one mount each decompress
// the same blocks twenty times, and a container mounted afresh for every
// start decompresses its init on every start. With Lowers, an image is
// attached to one loop device and mounted once, under Dir, for as long as
// anybody uses it; only the overlay (and its upper layer) is per root.
//
// An image is identified by its device and inode, not its path, so two
// names of one file share a mount and a file replaced under the same name
// gets a mount of its own. The mount is reference-counted: the last
// Release unmounts it (its loop device then auto-clears) and removes its
// mountpoint. Nothing lingers: a caller that wants an image kept warm
// across unmounts of its roots holds a reference of its own (Acquire).
//
// Lowers is safe for concurrent use. Its zero value is not usable: make
// one with NewLowers.
type Lowers struct {
	dir string

	mu  sync.Mutex
	m   map[lowerKey]*lowerMount
	seq uint64
}

// lowerKey identifies an image file.
type lowerKey struct{ dev, ino uint64 }

// lowerMount is one shared mount. refs and the map entry are guarded by
// Lowers.mu; path and err are written before ready is closed and only read
// after.
type lowerMount struct {
	path  string
	refs  int
	ready chan struct{}
	err   error
}

// NewLowers returns a cache that makes its mountpoints in dir (created
// when first needed). dir must be private to the caller's mount namespace
// and not used for anything else; it must not contain any of ",:\\",
// which overlayfs options cannot carry.
func NewLowers(dir string) *Lowers {
	return &Lowers{dir: dir, m: map[lowerKey]*lowerMount{}}
}

// Dir is where the shared mountpoints are made.
func (l *Lowers) Dir() string { return l.dir }

// Len is the number of images mounted (or being mounted) now.
func (l *Lowers) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// Lower is one reference to a shared read-only mount of an image.
type Lower struct {
	l    *Lowers
	key  lowerKey
	m    *lowerMount
	once sync.Once
	// retry is an unmount that failed, tried again by the next Release.
	mu    sync.Mutex
	retry func() error
}

// Path is the mountpoint of the image: read-only, shared with every other
// holder of a reference.
func (lw *Lower) Path() string { return lw.m.path }
