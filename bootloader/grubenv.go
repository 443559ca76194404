package bootloader

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
)

// GrubenvSize is the size of a GRUB environment block as grub-editenv
// creates it; GRUB's save_env rewrites it in place and never grows it.
const GrubenvSize = 1024

const grubenvHeader = "# GRUB Environment Block\n"

// Grub keeps the variables in <storage>/boot/grubenv, GRUB's environment
// block (load_env, save_env, grub-editenv): the header line, then one
// "name=value\n" per variable, a backslash before each '\\' and newline in
// a value, and '#' up to 1024 bytes. Lines starting with '#' are comments
// (grub-editenv writes a warning line; a write here drops it).
type Grub struct {
	Dir string
	// NoReader: as Uboot's.
	NoReader bool
}

var _ Backend = Grub{}

func (g Grub) path() string { return filepath.Join(g.Dir, "grubenv") }

// Load reads grubenv; a missing file is an empty environment (a device that
// never updated boots the factory revision).
func (g Grub) Load() (Env, error) { return loadEnvFile(g.path(), parseGrubenv) }

// Save replaces grubenv with env, crash-safely (temp, fsync, rename, fsync
// dir: GRUB finds the file's blocks anew each boot); an env that does not
// fit 1024 bytes is refused and nothing is written.
func (g Grub) Save(env Env) error {
	data, err := formatGrubenv(env)
	if err != nil {
		return fmt.Errorf("save grubenv: %w", err)
	}
	return writeForBootloader(g.path(), data, 0o644, g.NoReader)
}

// Install sets pv_try=rev.
func (g Grub) Install(rev string) (bool, error) { return install(g, rev) }

// Commit sets pv_rev=rev and unsets pv_try.
func (g Grub) Commit(rev string) error { return commit(g, rev) }

// Fail unsets pv_try.
func (g Grub) Fail() error { return fail(g) }

// parseGrubenv reads an environment block. It is stricter than GRUB, which
// skips what it cannot read: a line without '=', an empty name, a NUL or a
// variable not ended by a newline is refused, by its offset.
func parseGrubenv(data []byte) (Env, error) {
	if len(data) != GrubenvSize {
		return nil, fmt.Errorf("%d bytes, want %d", len(data), GrubenvSize)
	}
	if !bytes.HasPrefix(data, []byte(grubenvHeader)) {
		return nil, fmt.Errorf("no %q header", strings.TrimSuffix(grubenvHeader, "\n"))
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, fmt.Errorf("NUL at byte %d", i)
	}
	env := Env{}
	for i := len(grubenvHeader); i < len(data); {
		if data[i] == '#' { // a comment, or the padding up to the end
			n := bytes.IndexByte(data[i:], '\n')
			if n < 0 {
				break
			}
			i += n + 1
			continue
		}
		if data[i] == '\n' {
			i++
			continue
		}
		start := i
		eq := bytes.IndexByte(data[i:], '=')
		nl := bytes.IndexByte(data[i:], '\n')
		if eq < 0 || nl >= 0 && nl < eq {
			return nil, fmt.Errorf("line at byte %d is not name=value", start)
		}
		name := string(data[i : i+eq])
		var v strings.Builder
		ended := false
		for i += eq + 1; i < len(data); i++ {
			c := data[i]
			if c == '\\' {
				if i+1 == len(data) {
					break
				}
				i++
				v.WriteByte(data[i])
				continue
			}
			if c == '\n' {
				i++
				ended = true
				break
			}
			v.WriteByte(c)
		}
		if !ended {
			return nil, fmt.Errorf("variable at byte %d (%q) has no end of line before the end of the block", start, name)
		}
		if err := checkGrubVar(name, v.String()); err != nil {
			return nil, fmt.Errorf("line at byte %d: %w", start, err)
		}
		// GRUB's load_env sets the variables in order: a later one wins.
		env[name] = v.String()
	}
	return env, nil
}

// formatGrubenv writes env as a 1024-byte block, names sorted.
func formatGrubenv(env Env) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(grubenvHeader)
	for _, k := range env.keys() {
		v := env[k]
		if err := checkGrubVar(k, v); err != nil {
			return nil, err
		}
		b.WriteString(k)
		b.WriteByte('=')
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' || v[i] == '\n' {
				b.WriteByte('\\')
			}
			b.WriteByte(v[i])
		}
		b.WriteByte('\n')
	}
	if b.Len() > GrubenvSize {
		return nil, fmt.Errorf("%w: the variables take %d bytes, the block holds %d", ErrTooBig, b.Len(), GrubenvSize)
	}
	b.Write(bytes.Repeat([]byte("#"), GrubenvSize-b.Len()))
	return b.Bytes(), nil
}

// checkGrubVar: a value may hold anything but NUL (GRUB's strings end
// there); a name starting with '#' would read as a comment, and GRUB does
// not unescape names, so no backslash there.
func checkGrubVar(k, v string) error {
	if err := checkVar(k, v, "\x00"); err != nil {
		return err
	}
	if k[0] == '#' || strings.ContainsRune(k, '\\') {
		return fmt.Errorf("variable name %q starts with '#' or holds a backslash", k)
	}
	return nil
}
