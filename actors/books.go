package actors

import (
	"maps"

	"github.com/pantavisor/pv/messages"
)

// Books are the parts of each container's bookkeeping that a supervisor
// started again (adopt.go) cannot read off the running system: the
// recovery retries made since the last reset (the policy's backoff and its
// give-up count on them), whether the container signalled READY, how its
// last run ended, and whether the API stopped it (its goal is STOPPED:
// the next supervisor leaves it down). The revision hands them to
// Config.OnBooks whenever they change; Config.Books gives them back to the
// next supervisor.
type Books map[string]ContainerBooks

// ContainerBooks is one container's entry of Books.
type ContainerBooks struct {
	Retries  int            `json:"retries,omitempty"`
	Ready    bool           `json:"ready,omitempty"`
	LastExit *messages.Exit `json:"last_exit,omitempty"`
	Stopped  bool           `json:"stopped,omitempty"`
}

// keepBooks hands the books to OnBooks when they changed since the last
// time. It runs after every message that may change them.
func (r *revisionActor) keepBooks() {
	if r.onBooks == nil || r.st == nil {
		return
	}
	b := make(Books, len(r.st.Containers))
	for ch := range r.children(kindContainer) {
		e := ContainerBooks{Retries: ch.ctr.recovery.history.Retries, Ready: ch.ctr.row.Status == messages.StatusReady,
			LastExit: ch.ctr.row.LastExit, Stopped: r.held[ch.name]}
		if e != (ContainerBooks{}) {
			b[ch.name] = e
		}
	}
	if maps.EqualFunc(b, r.books, func(x, y ContainerBooks) bool {
		return x.Retries == y.Retries && x.Ready == y.Ready && sameExit(x.LastExit, y.LastExit) && x.Stopped == y.Stopped
	}) {
		return
	}
	r.books = b
	r.onBooks(b)
}

func sameExit(a, b *messages.Exit) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
