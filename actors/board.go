package actors

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/pantavisor/pv/messages"
)

// board is where the running revision publishes its containers and groups
// whenever it may have changed them, for the readers outside the tree:
// GET /containers and GET /groups are the control socket's most frequent
// requests, and answering them from the revision's mailbox cost two actor
// hops and a fresh list per request (ARCHITECTURE.md, Performance notes).
// A published view is never changed again; readers copy what they alter.
type board struct {
	v atomic.Pointer[boardView]
	// memo is the last list handed out with its uptimes, reused within
	// the same second of the same view: uptimes are whole seconds, and a
	// list handed out is never changed, so readers may share it.
	memo atomic.Pointer[boardMemo]
}

type boardMemo struct {
	view *boardView
	sec  int64
	list []messages.ContainerInfo
}

type boardView struct {
	containers []messages.ContainerInfo
	// started holds each container's start time, for its uptime at the
	// moment it is read.
	started []time.Time
	groups  []messages.GroupInfo
	links   []messages.LinkInfo
}

// publish replaces the view; nil clears it (no revision running).
func (b *board) publish(v *boardView) {
	if b != nil {
		b.v.Store(v)
	}
}

// containers returns the published containers with their uptimes as of
// the current second; ok is false when nothing is published. The list is
// shared with other readers: nobody may change it.
func (b *board) containers() (out []messages.ContainerInfo, ok bool) {
	v := b.load()
	if v == nil {
		return nil, false
	}
	now := time.Now()
	if m := b.memo.Load(); m != nil && m.view == v && m.sec == now.Unix() {
		return m.list, true
	}
	out = slices.Clone(v.containers)
	for i := range out {
		if out[i].Pid > 0 && !v.started[i].IsZero() {
			out[i].UptimeSecs = int64(now.Sub(v.started[i]).Seconds())
		}
	}
	b.memo.Store(&boardMemo{view: v, sec: now.Unix(), list: out})
	return out, true
}

// links returns the published xconnect graph; nil when nothing is
// published.
func (b *board) links() []messages.LinkInfo {
	if v := b.load(); v != nil {
		return v.links
	}
	return nil
}

// groups returns the published groups; ok is false when nothing is
// published.
func (b *board) groups() ([]messages.GroupInfo, bool) {
	v := b.load()
	if v == nil {
		return nil, false
	}
	return v.groups, true
}

func (b *board) load() *boardView {
	if b == nil {
		return nil
	}
	return b.v.Load()
}

// publish puts the revision's rows on the board. It runs after every
// message and failure the revision handles (but the read-only queries),
// so what readers see is never older than the revision's last step.
func (r *revisionActor) publish() {
	if r.board == nil || r.st == nil {
		return
	}
	v := &boardView{containers: r.containers(), groups: r.groups(), links: r.linkInfos()}
	v.started = make([]time.Time, 0, len(v.containers))
	for ch := range r.children(kindContainer) {
		v.started = append(v.started, ch.ctr.row.StartedAt)
	}
	r.board.publish(v)
}
