//go:build integration

package ctrl

import (
	"strings"
	"syscall"
	"testing"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// TestNoSpace507 uploads to a 1 MiB tmpfs: the kernel's ENOSPC must come
// out as upstream's 507, with nothing kept, for an object and for a
// revision.
func TestNoSpace507(t *testing.T) {
	root := isolated.Tmpfs(t, "1m")
	st := &Storage{Layout: storage.Layout{Root: root}, State: state.Options{AppEngine: true}}
	sock := startServerWith(t, newFakeBackend(), fixedResolver("", nil), st)
	client := unixClient(sock)

	// Refused before its body is read: it does not fit.
	big := strings.Repeat("x", 2<<20)
	if got := sendEarly(t, sock, "PUT", "/objects/"+shaOf(big), big, int64(len(big))); got.status != 507 || got.body != errJSON(msgNoSpace) {
		t.Fatalf("2 MiB object on 1 MiB = %d %s", got.status, got.body)
	}
	if fs := files(t, st.Layout.Objects()); len(fs) != 0 {
		t.Fatalf("left behind: %q", fs)
	}
	if got := do(t, client, "PUT", "/objects/"+shaX, "x"); got.status != 200 {
		t.Fatalf("small object = %d %s", got.status, got.body)
	}
	// Fill the storage, then a revision does not fit.
	for i := 0; ; i++ {
		data := strings.Repeat(string(rune('a'+i%26)), 64<<10) + string(rune(i))
		got := sendEarly(t, sock, "PUT", "/objects/"+shaOf(data), data, int64(len(data)))
		if got.status == 507 {
			break
		}
		if got.status != 200 || i > 100 {
			t.Fatalf("filling: %d %s", got.status, got.body)
		}
	}
	// A state with a large inline document: more than what is left.
	padded := strings.TrimSuffix(permState, "}") + `,"pad.json":{"x":"` + strings.Repeat("p", 256<<10) + `"}}`
	if got := do(t, client, "PUT", "/steps/locals/full", padded); got.status != 507 || got.body != errJSON(msgNoSpace) {
		t.Fatalf("install on a full storage = %d %s", got.status, got.body)
	}
	if fs := files(t, st.Layout.Trails()); len(fs) != 0 {
		t.Fatalf("left behind: %q", fs)
	}
}

// TestReadOnly507 uploads to a storage remounted read-only: the kernel's
// EROFS is 507 naming the read-only storage, not a 500 that says nothing
// of the cause, for an object and for a revision.
func TestReadOnly507(t *testing.T) {
	root := isolated.Tmpfs(t, "1m")
	st := &Storage{Layout: storage.Layout{Root: root}, State: state.Options{AppEngine: true}}
	client := unixClient(startServerWith(t, newFakeBackend(), fixedResolver("", nil), st))
	// The revision's object is there: only its trail is refused.
	if got := do(t, client, "PUT", "/objects/"+shaX, "x"); got.status != 200 {
		t.Fatalf("object = %d %s", got.status, got.body)
	}
	if err := syscall.Mount("", root, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	defer syscall.Mount("", root, "", syscall.MS_REMOUNT, "")
	if got := do(t, client, "PUT", "/objects/"+shaOf("y"), "y"); got.status != 507 || got.body != errJSON(msgReadOnly) {
		t.Fatalf("object on a read-only storage = %d %s", got.status, got.body)
	}
	if got := do(t, client, "PUT", "/steps/locals/ro", permState); got.status != 507 || got.body != errJSON(msgReadOnly) {
		t.Fatalf("install on a read-only storage = %d %s", got.status, got.body)
	}
}
