package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lowerName names a shared mount's mountpoint: the image's device and
// inode, and a sequence number (Recover reads it back).
const lowerName = "%x-%x.%d"

// Acquire returns a reference to the mount of image, which must be a
// squashfs file: the existing mount when there is one, else a new one
// (loop device + squashfs). Concurrent Acquires of one image wait for a
// single mount. Every successful Acquire must be matched by a Release.
func (l *Lowers) Acquire(image string) (*Lower, error) {
	key, err := imageKey(image)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if m, ok := l.m[key]; ok {
		m.refs++
		l.mu.Unlock()
		<-m.ready
		if m.err != nil {
			// The mounting caller already dropped the entry; this
			// reference dies with it.
			return nil, m.err
		}
		return &Lower{l: l, key: key, m: m}, nil
	}
	l.seq++
	// A fresh mountpoint per mount, so that a new mount of an image never
	// waits for (or collides with) the unmount of its previous one.
	m := &lowerMount{
		path:  filepath.Join(l.dir, fmt.Sprintf(lowerName, key.dev, key.ino, l.seq)),
		refs:  1,
		ready: make(chan struct{}),
	}
	l.m[key] = m
	l.mu.Unlock()

	m.err = mountShared(image, m.path)
	if m.err != nil {
		l.mu.Lock()
		if l.m[key] == m {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	close(m.ready)
	if m.err != nil {
		return nil, m.err
	}
	return &Lower{l: l, key: key, m: m}, nil
}

// mountShared attaches image to an auto-clearing loop device and mounts it
// read-only at a new directory target.
func mountShared(image, target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("shared lower %s: create mountpoint: %w", image, err)
	}
	dev, f, err := attachLoop(image)
	if err != nil {
		_ = os.Remove(target)
		return fmt.Errorf("mount squashfs %s: %w", image, err)
	}
	// Closing the last handle of an unmounted auto-clearing device detaches
	// it, so this also cleans up when the mount fails.
	defer f.Close()
	if err := unix.Mount(dev, target, "squashfs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		_ = os.Remove(target)
		return fmt.Errorf("mount squashfs %s on %s: %w", image, dev, &os.PathError{Op: "mount", Path: target, Err: err})
	}
	return nil
}

// Release drops the reference. The last one unmounts the image (lazily if
// something still uses it, e.g. a lazily detached overlay) and removes its
// mountpoint. Release is idempotent: only the first call counts, and a
// call after a failed unmount tries it again.
func (lw *Lower) Release() error {
	first := false
	lw.once.Do(func() {
		first = true
		l, m := lw.l, lw.m
		l.mu.Lock()
		m.refs--
		last := m.refs == 0
		if last && l.m[lw.key] == m {
			delete(l.m, lw.key)
		}
		l.mu.Unlock()
		if last {
			lw.mu.Lock()
			lw.retry = func() error { return unmountShared(m.path) }
			lw.mu.Unlock()
		}
	})
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.retry == nil {
		return nil
	}
	if err := lw.retry(); err != nil {
		if first {
			return fmt.Errorf("release shared lower: %w", err)
		}
		return fmt.Errorf("release shared lower (retry): %w", err)
	}
	lw.retry = nil
	return nil
}

func unmountShared(path string) error {
	if err := unmount(path); err != nil {
		return &os.PathError{Op: "unmount", Path: path, Err: err}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove mountpoint: %w", err)
	}
	return nil
}

// Recover takes the shared mounts a previous supervisor of the device
// left in Dir (it died; the containers on them run on) into the cache,
// with no reference yet: adopting Mounts take theirs (Options.Adopt), and
// Prune unmounts what none took. It returns how many it found.
func (l *Lowers) Recover() (int, error) {
	entries, err := os.ReadDir(l.dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("recover shared lowers: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range entries {
		var key lowerKey
		var seq uint64
		if _, err := fmt.Sscanf(e.Name(), lowerName, &key.dev, &key.ino, &seq); err != nil {
			continue
		}
		path := filepath.Join(l.dir, e.Name())
		if !IsMountpoint(path) {
			_ = os.Remove(path)
			continue
		}
		l.seq = max(l.seq, seq)
		if _, ok := l.m[key]; ok {
			continue
		}
		ready := make(chan struct{})
		close(ready)
		l.m[key] = &lowerMount{path: path, ready: ready}
		n++
	}
	return n, nil
}

// acquireRecovered is Acquire for an adopting Mount: the image's mount
// must be in the cache already (Recover); none is made.
func (l *Lowers) acquireRecovered(image string) (*Lower, error) {
	key, err := imageKey(image)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.m[key]
	if !ok {
		return nil, fmt.Errorf("adopt shared lower %s: %w", image, ErrNotMounted)
	}
	m.refs++
	return &Lower{l: l, key: key, m: m}, nil
}

// Prune unmounts the recovered mounts that nothing took: their containers
// ended while no supervisor was there.
func (l *Lowers) Prune() error {
	l.mu.Lock()
	var idle []*lowerMount
	for k, m := range l.m {
		if m.refs == 0 {
			idle = append(idle, m)
			delete(l.m, k)
		}
	}
	l.mu.Unlock()
	var errs []error
	for _, m := range idle {
		if err := unmountShared(m.path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// imageKey identifies an image file by its device and inode.
func imageKey(image string) (lowerKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil {
		return lowerKey{}, fmt.Errorf("shared lower %s: %w", image, &os.PathError{Op: "stat", Path: image, Err: err})
	}
	return lowerKey{dev: uint64(st.Dev), ino: st.Ino}, nil
}
