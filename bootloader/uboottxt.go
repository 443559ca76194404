package bootloader

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// UbootTxtSize is the size of upstream's uboot.txt: U-Boot's boot script
// imports that many bytes of it.
const UbootTxtSize = 1024

// Uboot keeps the variables in <storage>/boot/uboot.txt, upstream
// Pantavisor's file for U-Boot: "k=v" entries, each ended by a NUL, an
// empty entry (a second NUL) after the last, padded with NULs to 1 KiB.
// meta-pantavisor's boot script loads it from the data partition and
// imports it (env import) before it picks the revision; the pv_trying latch
// lives in the script's own pv.env, which this backend does not touch.
type Uboot struct {
	Dir string
	// NoReader says no bootloader reads the file (appengine): it is not
	// checkpointed out of the ext4 journal (writeForBootloader).
	NoReader bool
}

var _ Backend = Uboot{}

func (u Uboot) path() string { return filepath.Join(u.Dir, "uboot.txt") }

// Load reads uboot.txt; a missing file is an empty environment (a device
// that never updated boots the factory revision).
func (u Uboot) Load() (Env, error) {
	return loadNulEnv(u.path(), UbootTxtSize)
}

// Save replaces uboot.txt with env, crash-safely; an env that does not fit
// 1 KiB is refused and nothing is written.
func (u Uboot) Save(env Env) error {
	return saveNulEnv(u.path(), env, UbootTxtSize, u.NoReader)
}

// Install sets pv_try=rev.
func (u Uboot) Install(rev string) (bool, error) { return install(u, rev) }

// Commit sets pv_rev=rev and unsets pv_try.
func (u Uboot) Commit(rev string) error { return commit(u, rev) }

// Fail unsets pv_try.
func (u Uboot) Fail() error { return fail(u) }

func loadNulEnv(path string, size int) (Env, error) {
	return loadEnvFile(path, func(data []byte) (Env, error) { return parseNulFile(data, size) })
}

func saveNulEnv(path string, env Env, size int, noReader bool) error {
	data, err := formatNulFile(env, size)
	if err != nil {
		return fmt.Errorf("save %s: %w", filepath.Base(path), err)
	}
	return writeForBootloader(path, data, 0o644, noReader)
}

// loadEnvFile reads the environment file at path with parse; a missing
// file is an empty environment (a device that never updated boots the
// factory revision), a file parse refuses is ErrCorrupt.
func loadEnvFile(path string, parse func([]byte) (Env, error)) (Env, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return Env{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read bootloader env: %w", err)
	}
	env, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("read bootloader env %s: %w: %w", path, ErrCorrupt, err)
	}
	return env, nil
}

// parseNulFile reads upstream's NUL-separated file (uboot.txt, rpiab.txt).
// Only its first size bytes count, as upstream reads them (upstream writes
// uboot.txt 64 KiB long, zeros after the first KiB). The variables end at
// an empty entry, at two 0xff bytes (erased flash), or at the end of a
// shorter file.
func parseNulFile(data []byte, size int) (Env, error) {
	if len(data) > size {
		data = data[:size]
	}
	return parseNulEntries(data, true)
}

// formatNulFile writes env in upstream's NUL-separated format, padded with
// NULs to size bytes.
func formatNulFile(env Env, size int) ([]byte, error) {
	data, err := formatNulEntries(env)
	if err != nil {
		return nil, err
	}
	if len(data) > size {
		return nil, fmt.Errorf("%w: the variables take %d bytes, the file holds %d", ErrTooBig, len(data), size)
	}
	return append(data, make([]byte, size-len(data))...), nil
}

// parseNulEntries reads "k=v\0k=v\0\0". With fileEnds, the end of data and
// two 0xff bytes end the entries too (upstream's files); without, the empty
// entry must come within data (U-Boot's environment).
func parseNulEntries(data []byte, fileEnds bool) (Env, error) {
	env := Env{}
	for i := 0; ; {
		if i == len(data) {
			if fileEnds {
				return env, nil
			}
			return nil, fmt.Errorf("no end of the variables (two NULs) in %d bytes", len(data))
		}
		if data[i] == 0 || fileEnds && data[i] == 0xff && (i+1 == len(data) || data[i+1] == 0xff) {
			return env, nil
		}
		n := bytes.IndexByte(data[i:], 0)
		if n < 0 {
			return nil, fmt.Errorf("entry at byte %d: no NUL before the end", i)
		}
		entry := string(data[i : i+n])
		k, v, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("entry at byte %d: %q is not name=value", i, entry)
		}
		if err := checkNulVar(k, v); err != nil {
			return nil, fmt.Errorf("entry at byte %d: %w", i, err)
		}
		// U-Boot imports entries in order, so a later one wins.
		env[k] = v
		i += n + 1
	}
}

// formatNulEntries writes "k=v\0…k=v\0\0", names sorted.
func formatNulEntries(env Env) ([]byte, error) {
	var b bytes.Buffer
	for _, k := range env.keys() {
		if err := checkNulVar(k, env[k]); err != nil {
			return nil, err
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(env[k])
		b.WriteByte(0)
	}
	b.WriteByte(0)
	return b.Bytes(), nil
}

// checkNulVar: a value cannot hold NUL, the entry separator, and a name
// cannot start with 0xff, which upstream's reader takes for erased flash.
func checkNulVar(k, v string) error {
	if err := checkVar(k, v, "\x00"); err != nil {
		return err
	}
	if k[0] == 0xff {
		return fmt.Errorf("variable name %q starts with 0xff", k)
	}
	return nil
}
