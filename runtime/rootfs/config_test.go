package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteConfigLaysFilesOut(t *testing.T) {
	// The modes hold whatever the supervisor's umask.
	defer syscall.Umask(syscall.Umask(0o077))
	tmp := t.TempDir()
	src := filepath.Join(tmp, "object")
	if err := os.WriteFile(src, []byte("from an object\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "config")
	err := writeConfig(dir, []ConfigFile{
		{Path: "etc/app/app.conf", Source: src},
		{Path: "etc/app/doc.json", Data: []byte(`{"a":1}`)},
		{Path: "top", Data: nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"etc/app/app.conf": "from an object\n", "etc/app/doc.json": `{"a":1}`, "top": ""} {
		full := filepath.Join(dir, path)
		b, err := os.ReadFile(full)
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", path, b, err, want)
		}
		// As upstream's copy: 0644 whatever the object's mode.
		if fi, err := os.Stat(full); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s mode = %v, %v; want 0644", path, fi.Mode(), err)
		}
	}
	for _, d := range []string{"etc", "etc/app"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
			t.Errorf("directory %s: %v, %v; want 0755", d, fi, err)
		}
	}
}

func TestWriteConfigRefusesPathsOutsideIt(t *testing.T) {
	for _, p := range []string{"", "/etc/x", "../x", "etc/../../x", "etc//x", "etc/./x", "etc/", "a\x00b", "."} {
		dir := filepath.Join(t.TempDir(), "config")
		err := writeConfig(dir, []ConfigFile{{Path: "ok", Data: []byte("y")}, {Path: p, Data: []byte("x")}})
		if !errors.Is(err, ErrBadOptions) {
			t.Errorf("path %q: err = %v, want ErrBadOptions", p, err)
		}
		// Refused before anything is written.
		if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("path %q: the config dir was made: %v", p, err)
		}
	}
}

func TestWriteConfigNamesWhatFailed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "config")
	err := writeConfig(dir, []ConfigFile{{Path: "etc/gone", Source: filepath.Join(t.TempDir(), "missing")}})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want a missing source", err)
	}
	if want := "etc/gone"; !strings.Contains(err.Error(), want) {
		t.Errorf("err %q does not name %s", err, want)
	}
}
