package storage

import (
	"fmt"
	"syscall"
)

// Space is what statfs(2) says of a filesystem, in bytes: the figures
// PV_STORAGE_GC_RESERVED and PV_STORAGE_GC_THRESHOLD are applied to.
type Space struct {
	// Free is what an unprivileged writer may still use (f_bavail), as
	// upstream counts it: the blocks an ext4 keeps for root are not
	// counted as free.
	Free int64
	// Total is the filesystem's size (f_blocks).
	Total int64
}

// StatSpace returns the space of the filesystem that holds path.
func StatSpace(path string) (Space, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	// f_blocks and f_bavail count fragments of f_frsize bytes; Linux
	// sets f_frsize to f_bsize on every filesystem that has no
	// fragments, and leaves it 0 on some old ones.
	// Their types differ between architectures, hence the conversions.
	unit := int64(st.Frsize)
	if unit <= 0 {
		unit = int64(st.Bsize)
	}
	return Space{Free: mulSat(int64(st.Bavail), unit), Total: mulSat(int64(st.Blocks), unit)}, nil
}

// mulSat is a*b for non-negative a and b, saturated at the largest int64
// rather than wrapped (a statfs of a corrupt filesystem may say anything).
func mulSat(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > (1<<63-1)/b {
		return 1<<63 - 1
	}
	return a * b
}

// Percent is percent % of the filesystem's size, percent clamped to
// 0..100. It is exact for any size: Total*percent could overflow.
func (s Space) Percent(percent int) int64 {
	p := int64(min(max(percent, 0), 100))
	return s.Total/100*p + s.Total%100*p/100
}

// Available is what may still be written without eating into a reserve
// of reserved % of the size: Free less the reserve, 0 when Free is
// already below it.
func (s Space) Available(reserved int) int64 {
	return max(s.Free-s.Percent(reserved), 0)
}

// Fits reports whether n more bytes can be written and leave the reserve
// of reserved % of the size free.
func (s Space) Fits(n int64, reserved int) bool {
	return n <= s.Available(reserved)
}

// Below reports whether the free space is below threshold % of the size;
// never for a threshold of 0 (PV_STORAGE_GC_THRESHOLD's "off").
func (s Space) Below(threshold int) bool {
	return threshold > 0 && s.Free < s.Percent(threshold)
}
