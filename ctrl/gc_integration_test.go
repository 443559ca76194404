//go:build integration

package ctrl

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// ageRevision makes revision rev and its objects look installed an hour
// ago, as an old revision is: the automatic GC keeps what is recent.
func ageRevision(t *testing.T, l storage.Layout, rev string, objects ...string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	for _, p := range append([]string{l.Trail(rev)}, objects...) {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
}

// storageWithOldRevision is a storage on a tmpfs of size with the
// factory revision and an old revision 1 whose root object (returned) is
// oldSize bytes.
func storageWithOldRevision(t *testing.T, size string, oldSize int) (*Storage, string) {
	t.Helper()
	st := &Storage{Layout: storage.Layout{Root: isolated.Tmpfs(t, size)}, State: state.Options{AppEngine: true}}
	installRev(t, st.Layout, "0", "conf", "factory root")
	oldRoot := pattern("old root ", oldSize)
	installRev(t, st.Layout, "1", "conf", oldRoot)
	ageRevision(t, st.Layout, "1", st.Layout.Object(shaOf(oldRoot)))
	return st, oldRoot
}

// pattern is n bytes that no other object of the tests shares.
func pattern(seed string, n int) string {
	return strings.Repeat(seed, n/len(seed)+1)[:n]
}

// space is the storage's free space now.
func space(t *testing.T, l storage.Layout) storage.Space {
	t.Helper()
	sp, err := storage.StatSpace(l.Root)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// TestReserveOnRealFilesystem uploads to a 4 MiB tmpfs with 10 %
// reserved, the device running revision 2 with an old revision 1 beside
// it. (a) An object that fits only once revision 1 is gone is stored
// after an automatic GC removed it. (b) Objects of a local update whose
// step is not uploaded yet are put, then an object that the filesystem
// could hold but only by eating into the reserve is refused with 507,
// with and without a Content-Length: nothing of it is left, the reserve
// is intact, the pending objects (and (a)'s, whose step is not there
// either) survived the GC that upload ran, and their step installs.
func TestReserveOnRealFilesystem(t *testing.T) {
	const kib = 1 << 10
	st, oldRoot := storageWithOldRevision(t, "4m", 1536*kib)
	l := st.Layout
	installRev(t, l, "2", "conf", "running root")
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "2", Committed: "2"}
	s, logs := gcServer(t, b, st, map[string]string{config.PVStorageGCReserved: "10"})
	sock := serveTest(t, s)
	client := unixClient(sock)

	// (a) More than the free space: it fits only after the GC.
	sp := space(t, l)
	big := pattern("new root ", int(sp.Free)+256*kib)
	if sp.Fits(int64(len(big)), 10) || !(storage.Space{Free: sp.Free + int64(len(oldRoot)), Total: sp.Total}).Fits(int64(len(big)), 10) {
		t.Fatalf("bad set-up: %d bytes with %+v", len(big), sp)
	}
	if got := do(t, client, "PUT", "/objects/"+shaOf(big), big); got.status != 200 {
		t.Fatalf("object that fits after GC = %d %s\n%s", got.status, got.body, logs)
	}
	if revs, _ := l.Revisions(); strings.Join(revs, " ") != "0 2" {
		t.Errorf("revisions after the automatic GC = %v, want 0 2", revs)
	}
	if _, err := os.Stat(l.Object(shaOf(oldRoot))); !os.IsNotExist(err) {
		t.Errorf("revision 1's object is still there: %v", err)
	}
	if err := l.Verify(shaOf(big)); err != nil {
		t.Errorf("the new object: %v", err)
	}
	if !strings.Contains(logs.String(), "storage garbage collected automatically") {
		t.Errorf("the GC is not logged:\n%s", logs)
	}

	// (b) A local update's objects, uploaded before its step.
	pendingConf, pendingRoot := "pending conf", pattern("pending root ", 20*kib)
	for _, data := range []string{pendingConf, pendingRoot} {
		if got := do(t, client, "PUT", "/objects/"+shaOf(data), data); got.status != 200 {
			t.Fatalf("pending object = %d %s", got.status, got.body)
		}
	}
	sp = space(t, l)
	reserve := sp.Percent(10)
	// The filesystem has room for it, the reserve does not.
	over := pattern("over ", int(sp.Available(10)+reserve/2))
	for _, chunked := range []bool{false, true} {
		length := int64(len(over))
		if chunked {
			length = -1
		}
		got := sendEarly(t, sock, "PUT", "/objects/"+shaOf(over), over, length)
		if got.status != 507 || got.body != errJSON(msgNoSpace) {
			t.Errorf("chunked %v: an object in the reserve = %d %s", chunked, got.status, got.body)
		}
		if fs := files(t, l.Objects()); len(fs) != 6 {
			t.Errorf("chunked %v: objects/ holds %q, want the 6 there before", chunked, fs)
		}
		if _, err := os.Stat(l.Object(shaOf(over))); !os.IsNotExist(err) {
			t.Errorf("chunked %v: the refused object is there: %v", chunked, err)
		}
		if now := space(t, l); now.Free < reserve {
			t.Errorf("chunked %v: free %d below the reserve %d", chunked, now.Free, reserve)
		}
	}
	want := fmt.Sprintf("Space required %d B", len(over))
	if !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), shaOf(over)) {
		t.Errorf("the log does not say %q naming the object:\n%s", want, logs)
	}
	// (a)'s object too: its step is not uploaded either.
	for _, data := range []string{pendingConf, pendingRoot, big} {
		if err := l.Verify(shaOf(data)); err != nil {
			t.Errorf("a pending object is gone: %v", err)
		}
	}
	if got := do(t, client, "PUT", "/steps/locals/pending", stateWith(shaOf(pendingConf), shaOf(pendingRoot))); got.status != 200 {
		t.Errorf("the pending step = %d %s", got.status, got.body)
	}
}

// TestThresholdGCOnRealFilesystem watches an 8 MiB tmpfs with a threshold
// of 50 %: above it nothing is collected; an upload takes the free space
// below it, and the GC waits out the defer window after that upload,
// then removes the old revision.
func TestThresholdGCOnRealFilesystem(t *testing.T) {
	const kib = 1 << 10
	st, _ := storageWithOldRevision(t, "8m", 1024*kib)
	l := st.Layout
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	s, logs := gcServer(t, b, st, map[string]string{config.PVStorageGCThreshold: "50",
		config.PVStorageGCDeferTime: "2"})
	client := unixClient(serveTest(t, s))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.WatchStorage(ctx, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	revision1 := func() bool { _, err := os.Stat(l.Trail("1")); return err == nil }
	if space(t, l).Below(50) {
		t.Fatalf("bad set-up: %+v", space(t, l))
	}
	time.Sleep(300 * time.Millisecond)
	if !revision1() {
		t.Fatal("collected above the threshold")
	}

	// 3.5 MiB more: below 50 % free.
	data := pattern("upload ", 3584*kib)
	uploaded := time.Now()
	if got := do(t, client, "PUT", "/objects/"+shaOf(data), data); got.status != 200 {
		t.Fatalf("upload = %d %s", got.status, got.body)
	}
	if !space(t, l).Below(50) {
		t.Fatalf("bad set-up: not below 50 %% after the upload: %+v", space(t, l))
	}
	time.Sleep(time.Second)
	if !revision1() {
		t.Fatalf("collected %v after an upload, within the defer window of 2 s", time.Since(uploaded))
	}
	collected := func() bool { return strings.Contains(logs.String(), "storage garbage collected automatically") }
	for deadline := time.Now().Add(5 * time.Second); !collected(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not collected %v after the upload:\n%s", time.Since(uploaded), logs)
		}
	}
	if d := time.Since(uploaded); d < 2*time.Second {
		t.Errorf("collected %v after the upload, within the defer window", d)
	}
	if revision1() {
		t.Errorf("revision 1 is still there after the GC:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "below 50 %") {
		t.Errorf("the GC's log does not say why:\n%s", logs)
	}
	// Collected once: nothing changed since.
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(logs.String(), "storage garbage collected automatically"); n != 1 {
		t.Errorf("%d GCs, want 1:\n%s", n, logs)
	}
}
