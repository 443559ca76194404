package rootfs

import (
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// configDir is the config overlay's directory inside a root's WorkBase.
const configDir = "config"

// writeConfig lays files out in dir, which must not exist: files 0644,
// directories 0755, as upstream's `cp -aL` of the trail's _config/<name>/
// gives them. Every write goes through an os.Root of dir, so no path can
// reach outside it; a path that is not clean and relative is refused as
// ErrBadOptions, naming it, before anything is written.
func writeConfig(dir string, files []ConfigFile) (err error) {
	for _, f := range files {
		if !validConfigPath(f.Path) {
			return fmt.Errorf("config overlay: path %q is not a clean relative path: %w", f.Path, ErrBadOptions)
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("config overlay: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("config overlay: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("config overlay: %w", err)
	}
	defer root.Close()
	dirs := map[string]bool{} // made and given their mode already
	for _, f := range files {
		if err := writeConfigFile(root, f, dirs); err != nil {
			return fmt.Errorf("config overlay: %s: %w", f.Path, err)
		}
	}
	return nil
}

func writeConfigFile(root *os.Root, f ConfigFile, dirs map[string]bool) (err error) {
	// The modes are set, not asked of a umask: they are the overlay's
	// contract with the container, whatever umask the supervisor has.
	if d := path.Dir(f.Path); d != "." && !dirs[d] {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
		for ; d != "." && !dirs[d]; d = path.Dir(d) {
			if err := root.Chmod(d, 0o755); err != nil {
				return err
			}
			dirs[d] = true
		}
	}
	out, err := root.OpenFile(f.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if err := out.Chmod(0o644); err != nil {
		return err
	}
	if f.Source == "" {
		_, err = out.Write(f.Data)
		return err
	}
	in, err := os.Open(f.Source)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("source %s is not a regular file", f.Source)
	}
	// A file's copy_file_range: a copy in the kernel.
	_, err = io.Copy(out, in)
	return err
}

// validConfigPath says whether p names a file below a directory: relative,
// clean, with no empty, "." or ".." segment.
func validConfigPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || path.Clean(p) != p {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
