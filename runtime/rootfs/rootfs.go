package rootfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Persistence says where the writable overlay layer of a root filesystem
// lives and therefore how long writes survive.
type Persistence string

const (
	// Boot keeps writes on a tmpfs mounted for this root only, which only
	// its overlay can reach: they vanish at Unmount.
	Boot Persistence = "boot"
	// Revision keeps writes in Options.PersistDir, which the caller scopes
	// to one revision.
	Revision Persistence = "revision"
	// Permanent keeps writes in Options.PersistDir, which the caller keeps
	// across revisions.
	Permanent Persistence = "permanent"
)

// ParsePersistence returns the Persistence named by s; "" means Boot.
func ParsePersistence(s string) (Persistence, error) {
	switch p := Persistence(s); p {
	case "":
		return Boot, nil
	case Boot, Revision, Permanent:
		return p, nil
	}
	return "", fmt.Errorf("parse persistence %q: %w", s, ErrBadPersistence)
}

// Kind is the detected type of an image.
type Kind int

const (
	// Squashfs is a squashfs filesystem image, attached to a loop device.
	Squashfs Kind = iota + 1
	// Dir is a plain directory, used as is (bind or overlay lower layer).
	Dir
)

func (k Kind) String() string {
	switch k {
	case Squashfs:
		return "squashfs"
	case Dir:
		return "dir"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

var (
	// ErrUnknownImage is returned for an image that is neither a directory
	// nor a squashfs file.
	ErrUnknownImage = errors.New("not a squashfs image or directory")
	// ErrBadPersistence is returned for a persistence name other than
	// boot, revision or permanent.
	ErrBadPersistence = errors.New("unknown persistence")
	// ErrBadOptions is returned when Options are incomplete.
	ErrBadOptions = errors.New("invalid options")
	// ErrNotMounted is returned by an adopting Mount when a mount the
	// previous supervisor should have made is not there.
	ErrNotMounted = errors.New("not mounted")
)

// squashfsMagic is "hsqs": the little-endian superblock magic 0x73717368.
var squashfsMagic = []byte("hsqs")

// Detect reports whether path is a directory or a squashfs image, by the
// superblock magic rather than the file name.
func Detect(path string) (Kind, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("detect image: %w", err)
	}
	if fi.IsDir() {
		return Dir, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("detect image: %w", err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return 0, fmt.Errorf("detect image %s: %w", path, ErrUnknownImage)
	}
	if !bytes.Equal(magic[:], squashfsMagic) {
		return 0, fmt.Errorf("detect image %s: %w", path, ErrUnknownImage)
	}
	return Squashfs, nil
}

// Options describe one root filesystem to mount.
type Options struct {
	// Image is the root volume: a squashfs file or a directory.
	Image string
	// Persistence selects where the overlay's upper layer lives ("" = Boot).
	Persistence Persistence
	// PersistDir holds the upper and work directories ("upper", "work")
	// for Revision and Permanent; it is created if missing. Unused for Boot.
	PersistDir string
	// WorkBase is a directory owned by this root, created if missing: the
	// lower, tmpfs and rootfs mountpoints are made inside it. It must not
	// be shared by two mounted roots.
	WorkBase string
	// TmpfsSize is the size= option of the Boot tmpfs ("" = kernel default,
	// half of RAM).
	TmpfsSize string
	// Volumes are extra images mounted read-only, in order, after the root.
	Volumes []Volume
	// Lowers, when set, provides the squashfs mounts of the root image and
	// of squashfs volumes, shared with every other root mounted with the
	// same Lowers: the root's Lower is then a directory of Lowers, and a
	// volume's Target a read-only bind of it. Nil mounts them privately
	// for this root, under WorkBase.
	Lowers *Lowers
	// Adopt takes over the mounts a previous supervisor of the device
	// made with the same options (it died; its container runs on):
	// nothing is mounted, every mount Mount would make must be there
	// (ErrNotMounted otherwise), and Unmount undoes them as usual. The
	// shared lowers must have been recovered first (Lowers.Recover).
	Adopt bool
	// Config is laid over the image as its topmost read-only layer:
	// upstream's config overlay (a revision's _config/<container>/ keys).
	// Mount writes it afresh into WorkBase/config, files 0644 and
	// directories 0755 as upstream's copy gives them, and Unmount
	// removes it. The container's writes to these files go to the upper
	// layer, never to their sources.
	Config []ConfigFile
}

// ConfigFile is one file of the config overlay: Data, or the content of
// the file Source when Source is set.
type ConfigFile struct {
	// Path is where the file appears in the root: relative, with slashes.
	Path   string
	Source string
	Data   []byte
}

// Volume is an extra read-only image and where to mount it.
type Volume struct {
	// Image is a squashfs file or a directory (bound read-only).
	Image string
	// Target is the absolute mountpoint, created if missing.
	Target string
}
