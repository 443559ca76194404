package hangup

import (
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
)

// watch registers c with w, counting its wakes on woke.
func watch(t *testing.T, w *Watcher, c syscall.Conn, woke chan<- struct{}) *Watch {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var wt *Watch
	rc.Control(func(fd uintptr) {
		wt, err = w.Watch(int(fd), func() { woke <- struct{}{} })
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wt.Stop)
	return wt
}

func newWatcher(t *testing.T) *Watcher {
	w, err := New(slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// The owner waiting without reading is woken by the peer's half-close,
// and by nothing before it: data does not wake the watcher.
func TestWaitingOwnerWokenByTheEndNotByData(t *testing.T) {
	w := newWatcher(t)
	a, b := nstest.UnixPair(t)
	woke := make(chan struct{}, 4)
	wt := watch(t, w, b, woke)
	if !wt.Waiting() {
		t.Fatal("Waiting reported a hang-up before any")
	}
	a.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	select {
	case <-woke:
		t.Fatal("woken by data")
	case <-time.After(100 * time.Millisecond):
	}
	if !wt.Woke() || wt.HungUp() {
		t.Fatal("hung up after data alone")
	}
	if !wt.Waiting() {
		t.Fatal("Waiting reported a hang-up before any")
	}
	a.CloseWrite()
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("the half-close did not wake the waiting owner")
	}
	if wt.Woke() || !wt.HungUp() {
		t.Fatal("Woke after the hang-up reported none")
	}
}

// An end that came with data before the socket was watched, and so
// before any wait, is reported too; an owner that is not waiting is not
// woken, and learns of it from Waiting.
func TestEndBeforeTheWatchAndOwnerNotWaiting(t *testing.T) {
	w := newWatcher(t)
	a, b := nstest.UnixPair(t)
	a.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	a.CloseWrite()
	time.Sleep(20 * time.Millisecond) // the FIN is in b's queue
	woke := make(chan struct{}, 4)
	wt := watch(t, w, b, woke)
	deadline := time.Now().Add(5 * time.Second)
	for !wt.HungUp() {
		if time.Now().After(deadline) {
			t.Fatal("the end already in the socket was not reported")
		}
		time.Sleep(time.Millisecond)
	}
	if wt.Waiting() {
		t.Fatal("Waiting after the hang-up")
	}
	select {
	case <-woke:
		t.Fatal("an owner that was not waiting was woken")
	default:
	}
}

// A socket's number reused after Stop is not taken for the old one's:
// the new watch sees only its own socket's end.
func TestReusedDescriptorNotConfused(t *testing.T) {
	w := newWatcher(t)
	a1, b1 := nstest.UnixPair(t)
	woke1 := make(chan struct{}, 4)
	wt1 := watch(t, w, b1, woke1)
	wt1.Stop()
	_ = a1
	a2, b2 := nstest.UnixPair(t)
	woke2 := make(chan struct{}, 4)
	wt2 := watch(t, w, b2, woke2)
	wt2.Waiting()
	a1.CloseWrite() // the forgotten socket's end
	select {
	case <-woke2:
		t.Fatal("woken by another socket's end")
	case <-time.After(100 * time.Millisecond):
	}
	a2.Close()
	select {
	case <-woke2:
	case <-time.After(5 * time.Second):
		t.Fatal("the peer's close did not wake the waiting owner")
	}
	if wt1.HungUp() {
		t.Fatal("a stopped watch hung up")
	}
}
