package actors

import (
	"sync"
	"time"
)

// inflight follows an actor's background work (a mount, a start, a link's
// setup, a bind, a pool's setup) and what it sends the actor. A result
// that reaches an actor after it stopped for good is lost as a dead
// letter, with the socket, listener or container it holds; so the work
// asks deliver first, and an actor that stops takes back, with end, what
// it will never receive. An actor replaced by one that does the same work
// in the same places (a revision restarted after a panic makes its
// children anew) waits for the work under way. It is shared by the
// actor's incarnations, which all receive through the same PID.
type inflight[S any] struct {
	mu    sync.Mutex
	ended bool
	sent  map[uint64]S
	next  uint64
	// running counts the work begun and not done.
	running sync.WaitGroup
}

// begin names one piece of background work, which must call done when it
// ends; call it in the actor.
func (f *inflight[S]) begin() uint64 {
	f.running.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	return f.next
}

// done: the work begun has ended, its result sent or undone.
func (f *inflight[S]) done() { f.running.Done() }

// deliver reports whether the work of key may send its result s to the
// actor, which then owns it; if not, the actor has stopped for good and
// the caller must close s. keep says s holds something to close.
func (f *inflight[S]) deliver(key uint64, s S, keep bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return false
	}
	if keep {
		if f.sent == nil {
			f.sent = map[uint64]S{}
		}
		f.sent[key] = s
	}
	return true
}

// received takes the result of key for the actor, and reports false when
// end has taken it back already (the actor is stopping for good).
func (f *inflight[S]) received(key uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return false
	}
	delete(f.sent, key)
	return true
}

// end marks the actor stopped for good and returns the results sent to it
// that it will never receive, for it to close. Work that ends later undoes
// its own.
func (f *inflight[S]) end() []S {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ended = true
	left := make([]S, 0, len(f.sent))
	for _, s := range f.sent {
		left = append(left, s)
	}
	clear(f.sent)
	return left
}

// wait waits at most d for the work under way to end, and reports whether
// it did. Past d, its goroutine waits on until the work ends.
func (f *inflight[S]) wait(d time.Duration) bool {
	idle := make(chan struct{})
	go func() {
		f.running.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return true
	case <-time.After(d):
		return false
	}
}

// workWait bounds how long an actor stopping for good waits for its work
// under way. A start or a pool's setup takes well under a second; the
// wait and a container's stop grace together stay within the revision's
// silence that the watchdog's probe allows (revisionGraceMargin past the
// grace).
const workWait = revisionGraceMargin / 2
