package bootloader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoValidCopy is returned when no copy of a U-Boot environment has a
// good CRC: a device whose environment was never written, or was erased.
// U-Boot then boots with its built-in default environment; whether that
// means "empty, factory revision" is the caller's decision (Env{} and
// FactoryRev), never made here.
var ErrNoValidCopy = errors.New("no valid copy of the U-Boot environment")

// EnvCopy is where one copy of a U-Boot environment lives, a line of
// fw_env.config.
type EnvCopy struct {
	// Device is a regular file or a block device. MTD and UBI devices
	// (flash, which must be erased before it is written) are refused.
	Device string
	// Offset of the copy in Device; negative counts from the end of a
	// block device.
	Offset int64
	// Size of the copy, header included.
	Size int64
}

// UbootEnv keeps the variables in a U-Boot environment, the image U-Boot
// boots with and libubootenv's fw_printenv/fw_setenv read and write:
//
//	single:    CRC32 | data
//	redundant: CRC32 | flags | data, twice
//
// data is "k=v\0…k=v\0\0" padded with NULs to the copy's size, and the
// CRC32 (IEEE, of all of data) is little endian, as U-Boot and libubootenv
// store it on the little-endian CPUs this targets (ARM, x86, RISC-V). Of
// two copies with good CRCs the one with the higher flags counter is
// current, 0 counting as higher than 255 (the counter wraps), copy 0 on a
// tie: what U-Boot and libubootenv do for files, block devices and NAND.
// (NOR flash, where libubootenv marks copies active 1 and obsolete 0
// instead, is not supported.)
type UbootEnv struct {
	// Copies holds one copy, or two for a redundant environment.
	Copies []EnvCopy
	// NoReader: as Uboot's, for copies in regular files.
	NoReader bool
}

var _ Backend = UbootEnv{}

// check refuses a layout libubootenv would refuse.
func (u UbootEnv) check() error {
	if len(u.Copies) != 1 && len(u.Copies) != 2 {
		return fmt.Errorf("u-boot env: %d copies, want 1 or 2", len(u.Copies))
	}
	for i, c := range u.Copies {
		if c.Device == "" {
			return fmt.Errorf("u-boot env copy %d: no device", i)
		}
		if c.Size <= int64(u.header()) || c.Size > maxEnvSize {
			return fmt.Errorf("u-boot env copy %d: size %#x: want %#x to %#x bytes", i, c.Size, u.header()+1, maxEnvSize)
		}
	}
	if len(u.Copies) == 2 && u.Copies[0].Size != u.Copies[1].Size {
		return fmt.Errorf("u-boot env: copies of %#x and %#x bytes: a redundant environment has two of one size", u.Copies[0].Size, u.Copies[1].Size)
	}
	return nil
}

func (u UbootEnv) redundant() bool { return len(u.Copies) == 2 }

// header is the length of a copy's CRC and flags.
func (u UbootEnv) header() int {
	if u.redundant() {
		return 5
	}
	return 4
}

// image is one copy as read: whether its CRC is good, and its flags.
type image struct {
	raw   []byte
	valid bool
	flags byte
	why   string // what is wrong, when not valid
}

// Load reads the current copy. With no copy valid it returns
// ErrNoValidCopy; a current copy whose CRC is good but whose content is
// not name=value entries is an error, not a reason to take the older copy
// U-Boot does not boot with.
func (u UbootEnv) Load() (Env, error) {
	imgs, cur, err := u.read()
	if err != nil {
		return nil, fmt.Errorf("read u-boot env: %w", err)
	}
	if cur < 0 {
		return nil, fmt.Errorf("read u-boot env: %w", noValid(u, imgs))
	}
	env, err := parseNulEntries(imgs[cur].raw[u.header():], false)
	if err != nil {
		return nil, fmt.Errorf("read u-boot env %s: %w", u.where(cur), err)
	}
	return env, nil
}

// Save replaces the environment U-Boot boots with by env. Variables
// missing from env are gone, bootcmd and the rest of U-Boot's own included:
// change what Load returned. After ErrNoValidCopy, a Save makes U-Boot stop
// using its built-in default environment, which then must be in env.
//
// A redundant environment is written the way U-Boot and libubootenv write
// it: only the copy that is not current, with the flags counter one higher,
// so that the new copy becomes current only when it is whole; a write torn
// by a crash leaves a bad CRC there and the old copy current. Each copy is
// written durably: in a regular file by replacing the file (temporary file,
// fsync, rename, fsync of the directory); on a block device in place, then
// fsynced. A single copy on a block device therefore is not crash-safe: a
// torn write leaves no valid copy, and U-Boot its default environment.
func (u UbootEnv) Save(env Env) error {
	if err := u.check(); err != nil {
		return fmt.Errorf("save u-boot env: %w", err)
	}
	img, err := formatEnvImage(env, int(u.Copies[0].Size), u.redundant())
	if err != nil {
		return fmt.Errorf("save u-boot env: %w", err)
	}
	imgs, cur, err := u.read()
	if err != nil {
		return fmt.Errorf("save u-boot env: %w", err)
	}
	target := 0
	if u.redundant() {
		target, img[4] = 1, 1 // no valid copy: as libubootenv, copy 1 first
		if cur >= 0 {
			target, img[4] = 1-cur, imgs[cur].flags+1
		}
	}
	if err := writeCopy(u.Copies[target], img, u.NoReader); err != nil {
		return fmt.Errorf("save u-boot env %s: %w", u.where(target), err)
	}
	return nil
}

// Install sets pv_try=rev, keeping every other variable.
func (u UbootEnv) Install(rev string) (bool, error) { return install(u, rev) }

// Commit sets pv_rev=rev and unsets pv_try and pv_trying, keeping every
// other variable.
func (u UbootEnv) Commit(rev string) error { return commit(u, rev) }

// Fail unsets pv_try and pv_trying, keeping every other variable.
func (u UbootEnv) Fail() error { return fail(u) }

func (u UbootEnv) where(i int) string {
	return fmt.Sprintf("copy %d (%s at %#x)", i, u.Copies[i].Device, u.Copies[i].Offset)
}

// read reads every copy and returns the index of the current one, -1 when
// none is valid.
func (u UbootEnv) read() ([]image, int, error) {
	if err := u.check(); err != nil {
		return nil, -1, err
	}
	imgs := make([]image, len(u.Copies))
	for i, c := range u.Copies {
		raw, err := readCopy(c)
		if err != nil {
			return nil, -1, fmt.Errorf("%s: %w", u.where(i), err)
		}
		imgs[i] = checkEnvImage(raw, u.redundant())
	}
	if !u.redundant() {
		if imgs[0].valid {
			return imgs, 0, nil
		}
		return imgs, -1, nil
	}
	return imgs, currentCopy(imgs[0], imgs[1]), nil
}

// currentCopy is U-Boot's choice between two copies: the one valid, or of
// two valid the one with the higher counter, where 0 follows 255.
func currentCopy(a, b image) int {
	switch {
	case a.valid && !b.valid:
		return 0
	case !a.valid && b.valid:
		return 1
	case !a.valid && !b.valid:
		return -1
	case a.flags == 0xff && b.flags == 0:
		return 1
	case b.flags == 0xff && a.flags == 0:
		return 0
	case b.flags > a.flags:
		return 1
	default:
		return 0
	}
}

func noValid(u UbootEnv, imgs []image) error {
	var why []string
	for i, img := range imgs {
		why = append(why, u.where(i)+": "+img.why)
	}
	return fmt.Errorf("%w: %s", ErrNoValidCopy, strings.Join(why, "; "))
}

// checkEnvImage checks the CRC of one copy.
func checkEnvImage(raw []byte, redundant bool) image {
	hdr := 4
	if redundant {
		hdr = 5
	}
	img := image{raw: raw}
	if len(raw) <= hdr {
		img.why = fmt.Sprintf("%d bytes, shorter than a header", len(raw))
		return img
	}
	stored := binary.LittleEndian.Uint32(raw)
	if sum := crc32.ChecksumIEEE(raw[hdr:]); sum != stored {
		img.why = fmt.Sprintf("CRC32 %#08x, data sums to %#08x", stored, sum)
		return img
	}
	img.valid = true
	if redundant {
		img.flags = raw[4]
	}
	return img
}

// formatEnvImage returns one copy of size bytes holding env; for a
// redundant copy the flags byte (raw[4]) is 0, for the caller to set: the
// CRC does not cover it.
func formatEnvImage(env Env, size int, redundant bool) ([]byte, error) {
	hdr := 4
	if redundant {
		hdr = 5
	}
	data, err := formatNulEntries(env)
	if err != nil {
		return nil, err
	}
	if len(data) > size-hdr {
		return nil, fmt.Errorf("%w: the variables take %d bytes, a copy of %#x bytes holds %d", ErrTooBig, len(data), size, size-hdr)
	}
	img := make([]byte, size)
	copy(img[hdr:], data)
	binary.LittleEndian.PutUint32(img, crc32.ChecksumIEEE(img[hdr:]))
	return img, nil
}

// openCopy opens a copy's device and returns the copy's offset in it.
func openCopy(c EnvCopy, flag int) (*os.File, os.FileInfo, int64, error) {
	f, err := os.OpenFile(c.Device, flag, 0)
	if err != nil {
		return nil, nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, 0, err
	}
	m := fi.Mode()
	block := m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0
	if !m.IsRegular() && !block {
		f.Close()
		return nil, nil, 0, fmt.Errorf("%s is neither a regular file nor a block device (MTD and UBI are not supported)", c.Device)
	}
	off := c.Offset
	if off < 0 {
		if !block {
			f.Close()
			return nil, nil, 0, fmt.Errorf("offset %d: negative offsets count from the end of a block device, %s is a file", off, c.Device)
		}
		end, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return nil, nil, 0, err
		}
		if off += end; off < 0 {
			f.Close()
			return nil, nil, 0, fmt.Errorf("offset %d: before the start of %s (%d bytes)", c.Offset, c.Device, end)
		}
	}
	return f, fi, off, nil
}

func readCopy(c EnvCopy) ([]byte, error) {
	f, _, off, err := openCopy(c, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw := make([]byte, c.Size)
	n, err := f.ReadAt(raw, off)
	if err == io.EOF {
		return nil, fmt.Errorf("%s ends %d bytes into the copy of %#x bytes at %#x", c.Device, n, c.Size, off)
	}
	if err != nil {
		return nil, err
	}
	return raw, nil
}

// writeCopy writes one copy durably: a regular file is replaced whole
// (crash-safe), a block device is written in place and fsynced.
func writeCopy(c EnvCopy, img []byte, noReader bool) error {
	f, fi, off, err := openCopy(c, os.O_RDWR)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		defer f.Close()
		if _, err := f.WriteAt(img, off); err != nil {
			return err
		}
		return f.Sync()
	}
	f.Close()
	// Through a symbolic link, the file it points to is replaced, not the
	// link.
	path, err := filepath.EvalSymlinks(c.Device)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if int64(len(data)) < off+c.Size {
		return fmt.Errorf("%s is %d bytes, the copy of %#x bytes at %#x does not fit", path, len(data), c.Size, off)
	}
	copy(data[off:], img)
	return writeForBootloader(path, data, fi.Mode().Perm(), noReader)
}
