package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func shaOf(data string) string {
	sum := sha256.Sum256([]byte(data))
	return hex.EncodeToString(sum[:])
}

func newLayout(t testing.TB) Layout {
	t.Helper()
	return Layout{Root: t.TempDir()}
}

// put stores data as an object and returns its name.
func put(t testing.TB, l Layout, data string) string {
	t.Helper()
	sha := shaOf(data)
	if _, err := l.PutObject(sha, strings.NewReader(data), 0); err != nil {
		t.Fatal(err)
	}
	return sha
}

// setFault installs the fault hook for the test.
func setFault(t *testing.T, f func(step string) error) {
	t.Helper()
	fault = f
	t.Cleanup(func() { fault = nil })
}

// dotEntries lists the names starting with "." in dir: the store's
// temporary files.
func dotEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestPutObject(t *testing.T) {
	l := newLayout(t)
	content := "squashfs, say"
	sha := shaOf(content)
	existed, err := l.PutObject(sha, strings.NewReader(content), 0)
	if err != nil || existed {
		t.Fatalf("put: existed %v, %v", existed, err)
	}
	got, err := os.ReadFile(l.Object(sha))
	if err != nil || string(got) != content {
		t.Fatalf("stored %q, %v", got, err)
	}
	fi, err := os.Stat(l.Object(sha))
	if err != nil || !Verified(fi) {
		t.Fatalf("object not marked verified: %v, %v", fi.Mode(), err)
	}
	if names := dotEntries(t, l.Objects()); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
	// Idempotent: a verified object is not read again.
	existed, err = l.PutObject(sha, iotestErrReader{}, 0)
	if err != nil || !existed {
		t.Fatalf("second put: existed %v, %v", existed, err)
	}
	objs, err := l.ListObjects()
	if err != nil || len(objs) != 1 || objs[0].SHA != sha || objs[0].Size != int64(len(content)) {
		t.Fatalf("ListObjects = %v, %v", objs, err)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) {
	return 0, errors.New("read from a reader that should not be read")
}

func TestPutObjectFaults(t *testing.T) {
	content := strings.Repeat("x", 100)
	sha := shaOf(content)
	tests := []struct {
		name  string
		sha   string
		limit int64
		fault string // step failing with ENOSPC
		want  error
	}{
		{"bad name", "abc", 0, "", ErrBadObjectName},
		{"upper-case name", strings.ToUpper(sha), 0, "", ErrBadObjectName},
		{"bad checksum", shaOf("other"), 0, "", ErrBadChecksum},
		{"too large", sha, 99, "", ErrTooLarge},
		{"no space writing", sha, 0, "object.write", ErrNoSpace},
		{"no space syncing", sha, 0, "object.sync", ErrNoSpace},
		{"no space renaming", sha, 0, "object.rename", ErrNoSpace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayout(t)
			setFault(t, func(step string) error {
				if step == tc.fault {
					return syscall.ENOSPC
				}
				return nil
			})
			_, err := l.PutObject(tc.sha, strings.NewReader(content), tc.limit)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if names, _ := os.ReadDir(l.Objects()); len(names) != 0 {
				t.Errorf("left behind: %v", names)
			}
		})
	}
}

func TestObjectWriterStreams(t *testing.T) {
	l := newLayout(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB in many writes
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	w, err := l.CreateObject(sha, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for chunk := data; len(chunk) > 0; chunk = chunk[min(len(chunk), 4000):] {
		if _, err := w.Write(chunk[:min(len(chunk), 4000)]); err != nil {
			t.Fatal(err)
		}
	}
	if w.Size() != int64(len(data)) {
		t.Fatalf("size %d", w.Size())
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	w.Abort() // after Commit: nothing
	if err := l.Verify(sha); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write after commit accepted")
	}
}

func TestCheckObject(t *testing.T) {
	l := newLayout(t)
	if err := os.MkdirAll(l.Objects(), 0o755); err != nil {
		t.Fatal(err)
	}
	legacy := "written by upstream"
	sha := shaOf(legacy)
	if err := os.WriteFile(l.Object(sha), []byte(legacy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckObject(l.Object(sha), sha); err != nil {
		t.Fatalf("legacy object: %v", err)
	}
	if fi, _ := os.Stat(l.Object(sha)); !Verified(fi) {
		t.Fatalf("legacy object not marked after its check: %v", fi.Mode())
	}

	// A legacy corrupt object is found and left unmarked.
	bad := shaOf("the right content")
	if err := os.WriteFile(l.Object(bad), []byte("the wrong content"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := CheckObject(l.Object(bad), bad)
	var oe *ObjectError
	if !errors.Is(err, ErrBadChecksum) || !errors.As(err, &oe) || oe.Got != shaOf("the wrong content") {
		t.Fatalf("corrupt legacy object: %v", err)
	}
	if fi, _ := os.Stat(l.Object(bad)); Verified(fi) {
		t.Fatal("corrupt object marked")
	}
	// PutObject replaces it.
	if existed, err := l.PutObject(bad, strings.NewReader("the right content"), 0); err != nil || existed {
		t.Fatalf("replace corrupt object: %v, %v", existed, err)
	}
	if err := l.Verify(bad); err != nil {
		t.Fatal(err)
	}

	// A verified object is trusted without reading: corruption after the
	// mark is for Verify to find, not for a boot.
	if err := os.Chmod(l.Object(sha), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.Object(sha), []byte("bit rot"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(l.Object(sha), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := CheckObject(l.Object(sha), sha); err != nil {
		t.Fatalf("marked object read: %v", err)
	}
	if err := l.Verify(sha); !errors.Is(err, ErrBadChecksum) {
		t.Fatalf("Verify of a rotten object: %v", err)
	}

	missing := shaOf("never stored")
	if err := CheckObject(l.Object(missing), missing); !errors.Is(err, ErrObjectMissing) {
		t.Fatalf("missing object: %v", err)
	}
	if err := l.Verify(missing); !errors.Is(err, ErrObjectMissing) {
		t.Fatalf("Verify of a missing object: %v", err)
	}
}

func TestIsObjectTemp(t *testing.T) {
	sha := shaOf("x")
	for name, want := range map[string]bool{
		"." + sha + ".tmp123": true, sha + ".tmp": true, sha: false, ".tmp": false,
		".abc.tmp1": false, "notes.tmp": false,
	} {
		if got := isObjectTemp(name); got != want {
			t.Errorf("isObjectTemp(%q) = %v", name, got)
		}
	}
}

func TestTrailObjects(t *testing.T) {
	for dir, want := range map[string]string{
		"/s/trails/0":             "/s/objects",
		"/s/trails/locals/dev":    "/s/objects",
		"/s/trails/12/":           "/s/objects",
		"/s/trails/locals/x/../y": "/s/objects",
	} {
		if got := TrailObjects(dir); got != filepath.FromSlash(want) {
			t.Errorf("TrailObjects(%q) = %q, want %q", dir, got, want)
		}
	}
}
