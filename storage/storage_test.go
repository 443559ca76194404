package storage

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "env")
	for _, content := range []string{"one", "two, longer"} {
		if err := WriteFileAtomic(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("got %q, %v", got, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestCheckRev(t *testing.T) {
	for rev, ok := range map[string]bool{"0": true, "42": true, "locals/dev-1": true, "": false, "..": false,
		"a/b": false, "locals/": false, "locals/a/b": false, "../0": false, "current": false, "locals": false,
		".install-1": false, "locals/.x": false, "locals/current": true} {
		if err := CheckRev(rev); (err == nil) != ok || (err != nil && !errors.Is(err, ErrBadRevision)) {
			t.Errorf("CheckRev(%q) = %v", rev, err)
		}
	}
}
