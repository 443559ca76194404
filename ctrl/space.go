package ctrl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/storage"
)

// The storage's reserve and the automatic garbage collection.
//
// PV_STORAGE_GC_RESERVED is a share of the storage no upload may take, so
// that a device an update fills still has room for its logs, progress
// and metadata. An object upload that would eat into it is preceded by a
// GC and refused (507, nothing written) if it still does not fit; one
// without a Content-Length is stopped, and removed, once it would.
//
// PV_STORAGE_GC_THRESHOLD is a share of free space below which the GC
// runs by itself (WatchStorage), as upstream's main loop does it.
//
// Neither GC may remove what a local update in progress needs: pvr and
// pvcontrol upload the objects first and the step that refers to them
// afterwards, then run it. So an automatic GC keeps, besides what RUN_GC
// keeps, every object put and every revision installed within
// PV_STORAGE_GC_THRESHOLD_DEFERTIME (upstream's window after the last
// object put, 600 s). They are told by their files' modification times,
// which survive a restart of the supervisor between the uploads and the
// step, and by the server's own record of the objects put (an object put
// again, already stored, is not rewritten, so its file keeps an older
// time), which does not depend on the wall clock: a device without a
// real-time clock may set it years forward after the upload. The
// threshold GC also waits until no upload came within the window: the
// update in progress is then over or abandoned.

// guardEvery is how many bytes of an upload are written between two
// looks at the free space: a statfs per read would cost more than the
// write.
const guardEvery int64 = 4 << 20

// StorageCheckInterval is how often WatchStorage looks at the free space:
// a statfs, and while below the threshold a look at the revisions.
const StorageCheckInterval = 10 * time.Second

// errGCBusy: the automatic GC did not run, a command or another write
// held the storage.
var errGCBusy = errors.New("storage busy with a command or another write")

// defaults is the configuration of a server given none (SetConfig).
var defaults = config.New()

// spaceSettings are the storage keys' values now: they may change at run
// time (PUT /user-meta, a non-reboot update's OEM configuration).
func (s *Server) spaceSettings() (reserved, threshold int, deferTime time.Duration) {
	cfg := s.config()
	if cfg == nil {
		cfg = defaults
	}
	return cfg.Int(config.PVStorageGCReserved), cfg.Int(config.PVStorageGCThreshold),
		cfg.Duration(config.PVStorageGCDeferTime)
}

// uploads is the server's record of the recent uploads, for the
// automatic GC.
type uploads struct {
	mu sync.Mutex
	// last is when the last upload (an object or a step) started or
	// ended; zero when none came since the server started.
	last time.Time
	// n counts the uploads: the threshold GC runs again only when
	// something changed since it last ran.
	n uint64
	// objects are the objects put (stored or already there), with when,
	// no older than the defer window at the last put.
	objects map[string]time.Time
	// gcKey is what the storage looked like after the last threshold GC
	// (thresholdKey), "" when none ran or the free space rose above the
	// threshold since.
	gcKey string
}

// uploaded records an upload: of object sha when it is not "".
func (s *Server) uploaded(sha string) {
	_, _, window := s.spaceSettings()
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	u.last = now
	u.n++
	if sha == "" {
		return
	}
	if u.objects == nil {
		u.objects = map[string]time.Time{}
	}
	for k, t := range u.objects {
		if now.Sub(t) > window {
			delete(u.objects, k)
		}
	}
	u.objects[sha] = now
}

// keepRecent is what an automatic GC keeps of the recent uploads (see
// above): the objects put within the window, and a time after which a
// modified object or trail is kept.
func (s *Server) keepRecent(window time.Duration) (objects []string, newer time.Time) {
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	for sha, t := range u.objects {
		if now.Sub(t) <= window {
			objects = append(objects, sha)
		}
	}
	// The cut is compared with file times, which have no monotonic
	// reading: strip it, so that it is wall clock on both sides.
	return objects, now.Add(-window).Round(0)
}

// sinceUpload is how long ago the last upload was; ok is false when none
// came since the server started.
func (s *Server) sinceUpload() (d time.Duration, n uint64, ok bool) {
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.last.IsZero() {
		return 0, u.n, false
	}
	return time.Since(u.last), u.n, true
}

// collectAuto runs an automatic GC: what RUN_GC keeps, and the recent
// uploads. It takes the storage as RUN_GC does, and does not wait: with a
// command (LOCAL_RUN may be installing a revision) or another write in
// flight it returns errGCBusy. Nothing is removed when root cannot say
// which revisions are in use.
func (s *Server) collectAuto(st *Storage, why string) (storage.GCReport, error) {
	var rep storage.GCReport
	if !s.cmdMu.TryLock() {
		return rep, errGCBusy
	}
	defer s.cmdMu.Unlock()
	revs, err := s.b.Revisions()
	if err != nil {
		return rep, fmt.Errorf("revisions in use: %w", err)
	}
	if !s.storeMu.TryLock() {
		return rep, errGCBusy
	}
	defer s.storeMu.Unlock()
	_, _, window := s.spaceSettings()
	objects, newer := s.keepRecent(window)
	keep := append(revs.Revisions(), "0")
	rep, err = st.Layout.GC(storage.GCOptions{Keep: keep, KeepObjects: objects, KeepNewer: newer})
	s.log.Info("ctrl: storage garbage collected automatically", "why", why, "keep", keep,
		"kept_recent_objects", len(objects), "revisions", rep.Revisions, "objects", len(rep.Objects), "bytes", rep.Bytes)
	return rep, err
}

// roomFor reports whether an object of n bytes fits without eating into
// the reserve, after an automatic GC when it did not at first. When it
// does not, it has logged upstream's "Space required …" naming the
// object. A storage that cannot be measured is let through: the writes
// report a full one themselves.
func (s *Server) roomFor(st *Storage, sha string, n int64) bool {
	reserved, _, _ := s.spaceSettings()
	sp, err := storage.StatSpace(st.Layout.Root)
	if err != nil {
		s.log.Warn("ctrl: free space unknown", "err", err)
		return true
	}
	if sp.Fits(n, reserved) {
		return true
	}
	if _, err := s.collectAuto(st, "object "+sha+" does not fit: "+storage.SpaceMsg(n, sp.Available(reserved))); err != nil {
		s.log.Warn("ctrl: automatic storage garbage collection", "err", err)
	}
	if sp, err = storage.StatSpace(st.Layout.Root); err != nil || sp.Fits(n, reserved) {
		return true
	}
	s.log.Warn("ctrl: object refused: "+storage.SpaceMsg(n, sp.Available(reserved)), "sha256", sha,
		"reserved_percent", reserved)
	return false
}

// spaceError is an upload stopped before it ate into the reserve. It is
// a storage.ErrNoSpace.
type spaceError struct {
	// required is the object's size (so far, without a Content-Length),
	// available what the object could have had: the room above the
	// reserve and what it already took.
	required, available int64
}

func (e *spaceError) Error() string {
	return "reserve reached: " + storage.SpaceMsg(e.required, e.available)
}

func (e *spaceError) Is(target error) bool { return target == storage.ErrNoSpace }

// reserveGuard passes an upload's body on, looking at the free space
// every guardEvery bytes (or sooner when less is left): it fails a read
// whose bytes, or with a Content-Length the rest of the body, would eat
// into the reserve. The writer writes every read's bytes before the next
// read, so the free space it sees counts all that came before.
type reserveGuard struct {
	r io.Reader
	// length is the body's Content-Length, -1 when unknown.
	length int64
	// space is the free space and the reserve in % now.
	space func() (storage.Space, int, error)
	// read counts the bytes passed on; budget how many more may be
	// before the next look.
	read, budget int64
}

func (g *reserveGuard) Read(p []byte) (int, error) {
	if g.budget > 0 {
		if int64(len(p)) > g.budget {
			p = p[:g.budget]
		}
		n, err := g.r.Read(p)
		g.read += int64(n)
		g.budget -= int64(n)
		return n, err
	}
	// Read first: at the end of the body there is nothing to look at.
	n, err := g.r.Read(p)
	if n == 0 {
		return 0, err
	}
	sp, reserved, serr := g.space()
	if serr != nil {
		// Unknown: the writes report a full storage themselves.
		g.read += int64(n)
		g.budget = guardEvery
		return n, err
	}
	avail := sp.Available(reserved)
	need := int64(n)
	if g.length >= 0 {
		need = max(g.length-g.read, need)
	}
	if need > avail {
		size := g.read + int64(n)
		if g.length >= 0 {
			size = g.length
		}
		return 0, &spaceError{required: size, available: avail + g.read}
	}
	g.read += int64(n)
	g.budget = max(min(guardEvery, avail)-int64(n), 0)
	if g.length >= 0 {
		// The rest of the body fits: look again only for the sake of
		// other writers.
		g.budget = guardEvery - int64(n)
	}
	return n, err
}

// WatchStorage runs the threshold GC (PV_STORAGE_GC_THRESHOLD) until ctx
// ends: every interval it looks at the free space, and collects when it
// is below the threshold (thresholdGC). It returns when ctx ends.
func (s *Server) WatchStorage(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.thresholdGCSafe()
		}
	}
}

// thresholdGCSafe is thresholdGC, a panic logged rather than the
// supervisor's end.
func (s *Server) thresholdGCSafe() {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("ctrl: storage threshold check panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	s.thresholdGC()
}

// thresholdGC collects when the free space is below the threshold, but
// not within the defer window after an upload, and not again while
// nothing changed since it last did (the revisions on the storage, those
// in use, the uploads): another run would find nothing more to remove.
// It says whether it ran.
func (s *Server) thresholdGC() bool {
	st := s.store
	_, threshold, window := s.spaceSettings()
	if st == nil || threshold == 0 {
		return false
	}
	sp, err := storage.StatSpace(st.Layout.Root)
	if err != nil {
		return false
	}
	if !sp.Below(threshold) {
		s.setGCKey("")
		return false
	}
	since, n, seen := s.sinceUpload()
	if seen && since < window {
		return false
	}
	revs, err := s.b.Revisions()
	if err != nil {
		return false
	}
	inUse := strings.Join(revs.Revisions(), ",")
	if k := thresholdKey(st, inUse, n); k == "" || k == s.gcKeyNow() {
		return false
	}
	why := fmt.Sprintf("free space %d B below %d %% of %d B", sp.Free, threshold, sp.Total)
	if _, err := s.collectAuto(st, why); errors.Is(err, errGCBusy) {
		return false
	} else if err != nil {
		s.log.Warn("ctrl: automatic storage garbage collection", "err", err)
	}
	s.setGCKey(thresholdKey(st, inUse, n))
	return true
}

// thresholdKey is what a GC's result depends on: the revisions stored,
// those in use and the count of uploads; "" when the revisions cannot be
// listed.
func thresholdKey(st *Storage, inUse string, uploads uint64) string {
	stored, err := st.Layout.Revisions()
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s|%s|%d", strings.Join(stored, ","), inUse, uploads)
}

func (s *Server) gcKeyNow() string {
	s.recent.mu.Lock()
	defer s.recent.mu.Unlock()
	return s.recent.gcKey
}

func (s *Server) setGCKey(k string) {
	s.recent.mu.Lock()
	defer s.recent.mu.Unlock()
	s.recent.gcKey = k
}
