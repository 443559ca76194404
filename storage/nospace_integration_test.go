//go:build integration

package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/pantavisor/pv/internal/isolated"
)

// TestNoSpaceOnRealFilesystem fills a small tmpfs: the kernel's ENOSPC,
// not a fault hook, must come out as ErrNoSpace with nothing left behind,
// and what was there before must be intact.
func TestNoSpaceOnRealFilesystem(t *testing.T) {
	root := isolated.Tmpfs(t, "1m")
	l := Layout{Root: root}
	install(t, l, "0", map[string]string{"app/root.squashfs": "factory"})
	before := NewProgress(StatusDone, MsgFactory)
	if err := l.WriteProgress("0", before); err != nil {
		t.Fatal(err)
	}

	big := bytes.Repeat([]byte("x"), 2<<20)
	sha := shaBytes(big)
	if _, err := l.PutObject(sha, bytes.NewReader(big), 0); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a 2 MiB object on a 1 MiB storage: %v", err)
	}
	if tmps := dotEntries(t, l.Objects()); len(tmps) != 0 {
		t.Fatalf("left behind: %v", tmps)
	}

	// Fill the rest, then try to install and to write progress.
	var fill []string
	for i := 0; ; i++ {
		data := bytes.Repeat([]byte{byte(i)}, 64<<10)
		data = append(data, fmt.Sprint(i)...)
		_, err := l.PutObject(shaBytes(data), bytes.NewReader(data), 0)
		if errors.Is(err, ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fill = append(fill, shaBytes(data))
	}
	objs := map[string]string{}
	for i, s := range fill {
		objs[fmt.Sprintf("c%d/file", i)] = s
	}
	st := stateJSON(t, objs)
	// Directories for every key and a large state: more than what is left.
	st = append(st[:len(st)-1], fmt.Sprintf(`,"pad.json":{"x":%q}}`, bytes.Repeat([]byte("p"), 256<<10))...)
	if err := l.InstallTrail("1", st, InstallOptions{}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("install on a full storage: %v", err)
	}
	if tmps := dotEntries(t, l.Trails()); len(tmps) != 0 {
		t.Fatalf("left behind: %v", tmps)
	}
	if _, err := os.Stat(l.Trail("1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a partial revision is there: %v", err)
	}
	after := NewProgress(StatusError, MsgInternalError)
	after.Logs = string(bytes.Repeat([]byte("l"), 256<<10))
	if err := l.WriteProgress("0", after); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("progress on a full storage: %v", err)
	}
	if got, err := l.ReadProgress("0"); err != nil || got != before {
		t.Fatalf("progress of revision 0: %+v, %v", got, err)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestReadOnlyOnRealFilesystem remounts a tmpfs read-only under a storage:
// the kernel's EROFS must come out as ErrReadOnly, which callers name, not
// as an anonymous I/O error, and what was there must be intact.
func TestReadOnlyOnRealFilesystem(t *testing.T) {
	root := isolated.Tmpfs(t, "4m")
	l := Layout{Root: root}
	install(t, l, "0", map[string]string{"app/root.squashfs": "factory"})
	before := NewProgress(StatusDone, MsgFactory)
	if err := l.WriteProgress("0", before); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("", root, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	defer syscall.Mount("", root, "", syscall.MS_REMOUNT, "")

	data := []byte("an object")
	if _, err := l.PutObject(shaBytes(data), bytes.NewReader(data), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("an object on a read-only storage: %v", err)
	}
	if err := l.InstallTrail("1", stateJSON(t, map[string]string{}), InstallOptions{}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("install on a read-only storage: %v", err)
	}
	if err := l.WriteProgress("0", NewProgress(StatusError, MsgInternalError)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("progress on a read-only storage: %v", err)
	}
	if got, err := l.ReadProgress("0"); err != nil || got != before {
		t.Fatalf("progress of revision 0: %+v, %v", got, err)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
}
