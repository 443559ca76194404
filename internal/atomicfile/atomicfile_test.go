package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
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

// Commit syncs the file again after its rename, before the directory:
// on FAT (rpiab's autoboot.txt and pv_rev.txt, a U-Boot environment file
// there) the renamed file's new directory entry is written with its inode,
// which the directory's sync does not write, and a power cut within the
// writeback delay brought the old file back, pointing at clusters the
// rename had freed. The calls are seen through the package's seams.
func TestCommitSyncsTheFileAfterItsRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "autoboot.txt")
	var calls []string
	tmp := ""
	defer func(s func(*os.File) error, r func(string, string) error) { fsync, rename = s, r }(fsync, rename)
	fsync = func(f *os.File) error {
		switch f.Name() {
		case dir:
			calls = append(calls, "sync dir")
		case tmp:
			calls = append(calls, "sync file")
		default:
			calls = append(calls, "sync "+f.Name())
		}
		return f.Sync()
	}
	rename = func(from, to string) error {
		calls = append(calls, "rename")
		return os.Rename(from, to)
	}
	f, err := Create(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	tmp = f.Name()
	if _, err := f.Write([]byte("[all]\nboot_partition=3\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	want := []string{"sync file", "rename", "sync file", "sync dir"}
	if !slices.Equal(calls, want) {
		t.Errorf("calls %q, want %q", calls, want)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "[all]\nboot_partition=3\n" {
		t.Errorf("file %q, %v", b, err)
	}
}

// Leftovers finds what a crash left of the writes to one path (a
// temporary never committed nor discarded), and nothing else of its
// directory, even when the name holds glob characters.
func TestLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a[1]*.txt")
	var want []string
	for range 2 {
		f, err := Create(path, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.File.Close() // the crash: neither Commit nor Discard
		want = append(want, f.Name())
	}
	for _, other := range []string{"a[1]*.txt", ".a[1]*.txt.bak", ".a1x.txt.tmp1", ".b.tmp1", ".a[1]*.txt2.tmp3"} {
		if err := os.WriteFile(filepath.Join(dir, other), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Leftovers(path)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("leftovers %q, want %q", got, want)
	}
}
