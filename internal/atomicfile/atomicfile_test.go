package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// Only Commit replaces the file, whole and with its mode; Discard and a
// Commit that fails leave it as it was and no temporary file behind.
func TestWholeOrNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	only := func(want string) {
		t.Helper()
		ents, _ := os.ReadDir(dir)
		if b, _ := os.ReadFile(path); len(ents) != 1 || string(b) != want {
			t.Fatalf("%d entries, f holds %q; want f alone with %q", len(ents), b, want)
		}
	}
	f, err := Create(path, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("discarded"))
	f.Discard()
	only("old")

	if err := WriteFile(path, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	only("new")
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}

	// A rename that fails: the path is now a directory that is not
	// empty.
	os.Remove(path)
	if err := os.MkdirAll(filepath.Join(path, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("lost"), 0o644); err == nil {
		t.Fatal("rename over a directory: no error")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || !ents[0].IsDir() {
		t.Errorf("after a failed commit: %v, want the directory alone", ents)
	}
}
