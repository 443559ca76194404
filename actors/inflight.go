package actors

import "sync"

// inflight holds what an actor's background work has sent it and the
// actor has not yet received (a link's setup, a bound listener). A result
// that reaches an actor after it stopped for good is lost as a dead
// letter, with the socket or listener it holds; so the work asks deliver
// first, and an actor that stops takes back, with end, what it will never
// receive. It is shared by the actor's incarnations, which all receive
// through the same PID.
type inflight[S any] struct {
	mu    sync.Mutex
	ended bool
	sent  map[uint64]S
	next  uint64
}

// key names one piece of background work; call it in the actor.
func (f *inflight[S]) key() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	return f.next
}

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
// that it will never receive, for it to close.
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
