// Package hangup tells a reader that waits on a stream socket without
// reading it first that the peer has shut its side down.
//
// Go's poller reads a socket before it waits on it, because a read
// forgets whether the socket became readable before it started. A proxy
// that knows the socket is drained (its last read was shorter than the
// buffer) can skip that read, which then only fails with EAGAIN, and wait
// at once within one RawConn.Read, where readiness is not forgotten;
// nginx does the same. But an end of stream that came in the same wake-up
// as the last bytes read gives no new wake-up: the reader would wait for
// ever. nginx learns of it from the EPOLLRDHUP flag of its event, which
// Go's poller does not pass on. A Watcher gets it from an epoll set of its
// own, where each socket is registered for EPOLLRDHUP alone: that set is
// woken once per connection at most, by its end, never by its data, so
// it costs one epoll_ctl per connection and nothing per request.
package hangup

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A Watcher watches sockets for their peer's end of stream (or an error)
// and wakes their owners.
type Watcher struct {
	log  *slog.Logger
	f    *os.File // the epoll set, waited on in Go's poller
	epfd int
	mu   sync.Mutex
	seq  int32
	subs map[int32]*Watch // by socket descriptor
}

// The states of a Watch.
const (
	running int32 = iota // the owner reads, or does other work
	waiting              // the owner waits on the socket without reading
	hungUp               // the peer's end (or an error) is in the socket
)

// A Watch is one socket's registration. Its owner says when it waits
// without reading first (Waiting) and when that wait is over (Woke);
// both report false once the peer has hung up, and the owner then reads,
// which no longer blocks: the socket holds data, its end, or an error.
type Watch struct {
	w     *Watcher
	fd    int32
	seq   int32
	state atomic.Int32
	mu    sync.Mutex // held while the watcher hangs up and wakes
	wake  func()
}

var (
	shared     *Watcher
	sharedErr  error
	sharedOnce sync.Once
)

// Shared is the process's watcher, started at its first use; an error
// (no epoll set could be made) is returned to every caller, who then
// reads before each wait as Go's poller does.
func Shared() (*Watcher, error) {
	sharedOnce.Do(func() { shared, sharedErr = New(slog.Default()) })
	return shared, sharedErr
}

// New starts a watcher. It lives as long as the process: its goroutine
// waits in Go's poller and costs nothing while no peer hangs up.
func New(log *slog.Logger) (*Watcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("hangup: epoll_create1: %w", err)
	}
	// Go's poller takes only a descriptor in non-blocking mode.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("hangup: non-blocking epoll set: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "hangup-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("hangup: %w", err)
	}
	w := &Watcher{log: log, f: f, epfd: epfd, subs: map[int32]*Watch{}}
	go w.run(rc)
	return w, nil
}

func (w *Watcher) run(rc interface {
	Read(func(uintptr) bool) error
}) {
	events := make([]unix.EpollEvent, 64)
	for {
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return rc.Read(func(uintptr) bool {
				for {
					n, err := unix.EpollWait(w.epfd, events, 0)
					if errors.Is(err, unix.EINTR) {
						continue
					}
					if err != nil {
						w.log.Error("hangup watcher: epoll_wait", "err", err)
						return false
					}
					for _, ev := range events[:n] {
						w.hangUp(ev.Fd, ev.Pad)
					}
					if n < len(events) {
						return false // drained: wait for the next
					}
				}
			})
		}()
		if errors.Is(err, os.ErrClosed) {
			return
		}
		// A panic in a wake: the other owners are still owed theirs.
		w.log.Error("hangup watcher", "err", err)
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *Watcher) hangUp(fd, seq int32) {
	w.mu.Lock()
	wt := w.subs[fd]
	w.mu.Unlock()
	if wt == nil || wt.seq != seq {
		return // a socket already forgotten, its number maybe reused
	}
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if wt.state.Swap(hungUp) == waiting {
		wt.wake()
	}
}

// Watch registers the socket fd, whose owner wake wakes from a wait
// without reading (a past read deadline does). The socket must stay open
// until Stop.
func (w *Watcher) Watch(fd int, wake func()) (*Watch, error) {
	w.mu.Lock()
	w.seq++
	wt := &Watch{w: w, fd: int32(fd), seq: w.seq, wake: wake}
	w.subs[wt.fd] = wt
	w.mu.Unlock()
	// Reported once at most: the end of stream stays.
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: wt.fd, Pad: wt.seq}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		wt.Stop()
		return nil, fmt.Errorf("hangup: watch socket %d: %w", fd, err)
	}
	return wt, nil
}

// A Conn is a connection whose owner can be woken from a wait on it: its
// read deadline, set in the past, is the wake.
type Conn interface {
	syscall.Conn
	SetReadDeadline(time.Time) error
}

// aLongTimeAgo is the past read deadline that wakes a waiting owner.
var aLongTimeAgo = time.Unix(1, 0)

// WatchConn registers c with the process's watcher (Shared), waking its
// owner with a past read deadline. It returns c's RawConn, for the wait
// inside whose callback the owner does not read first. Once Waiting or
// Woke has reported the hang-up, the owner takes that deadline away
// (SetReadDeadline(time.Time{})) and reads before each wait from then on.
func WatchConn(c Conn) (*Watch, syscall.RawConn, error) {
	p, rc, err := Prepare(c)
	if err != nil {
		return nil, nil, err
	}
	var wt *Watch
	if cerr := rc.Control(func(fd uintptr) { wt, err = p.Watch(int(fd)) }); cerr != nil {
		return nil, nil, cerr
	}
	if err != nil {
		return nil, nil, err
	}
	return wt, rc, nil
}

// Pending is WatchConn with the registration put off until its owner is
// first about to wait without reading: a connection that never does (one
// request, then its end, as from clients that open a connection per
// request) costs no registration. Registering late loses nothing: an end
// of stream that came before it is reported at once (EPOLL_CTL_ADD
// checks the socket's state), and Waiting, Woke and the wake already
// handle an end reported at any time.
type Pending struct {
	w    *Watcher
	wake func()
}

// Prepare is WatchConn up to the registration, which Pending.Watch makes.
func Prepare(c Conn) (Pending, syscall.RawConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Pending{}, nil, err
	}
	w, err := Shared()
	if err != nil {
		return Pending{}, nil, err
	}
	return Pending{w: w, wake: func() { c.SetReadDeadline(aLongTimeAgo) }}, rc, nil
}

// Watch registers the connection's socket fd, which the caller holds open
// (inside a callback of its RawConn).
func (p Pending) Watch(fd int) (*Watch, error) { return p.w.Watch(fd, p.wake) }

// Stop forgets the socket. Its registration goes with its close: each
// socket's registration carries a number of its own, so that one that
// outlives Stop (the descriptor shared with a child being started) is
// not taken for a later socket's under the same descriptor number.
func (wt *Watch) Stop() {
	w := wt.w
	w.mu.Lock()
	if w.subs[wt.fd] == wt {
		delete(w.subs, wt.fd)
	}
	w.mu.Unlock()
}

// Waiting says the owner is about to wait on the socket without reading
// it first. False: the peer has hung up; read instead.
func (wt *Watch) Waiting() bool { return wt.state.CompareAndSwap(running, waiting) }

// Woke says the owner's wait is over, by readiness or by its wake. False:
// the peer has hung up, and the wake, if one was due, is done, so that
// the owner may undo it (clear the past read deadline) for good.
func (wt *Watch) Woke() bool {
	if wt.state.CompareAndSwap(waiting, running) || wt.state.Load() == running {
		return true
	}
	wt.mu.Lock()
	wt.mu.Unlock() //nolint:staticcheck // waits for a wake under way
	return false
}

// HungUp reports whether the peer's end has been seen.
func (wt *Watch) HungUp() bool { return wt.state.Load() == hungUp }
