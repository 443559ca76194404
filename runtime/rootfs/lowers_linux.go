package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Acquire returns a reference to the mount of image, which must be a
// squashfs file: the existing mount when there is one, else a new one
// (loop device + squashfs). Concurrent Acquires of one image wait for a
// single mount. Every successful Acquire must be matched by a Release.
func (l *Lowers) Acquire(image string) (*Lower, error) {
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil {
		return nil, fmt.Errorf("shared lower %s: %w", image, &os.PathError{Op: "stat", Path: image, Err: err})
	}
	key := lowerKey{dev: uint64(st.Dev), ino: st.Ino}
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
		path:  filepath.Join(l.dir, fmt.Sprintf("%x-%x.%d", key.dev, key.ino, l.seq)),
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
