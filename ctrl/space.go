package ctrl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/storage"
)

// The storage's reserve and the automatic garbage collection.
//
// PV_STORAGE_GC_RESERVED is a share of the storage no upload may take, so
// that a device an update fills still has room for its logs, progress
// and metadata. An object upload with a Content-Length claims its bytes
// (uploads in flight do not count each other's bytes twice, nor miss
// them: each sees the free space less what the others still have to
// write); one that would eat into the reserve is preceded by an automatic
// GC and refused (507, nothing written) if it still does not fit. One
// larger than the storage above its reserve could ever hold is refused at
// once, without a GC. One whose GC cannot run now (a command or another
// write holds the storage) is answered 503 with a Retry-After: pvcontrol
// exits 75 (try again), not 48 (full). An upload without a Content-Length
// (chunked) gets no GC: it is stopped, and removed, once it would reach
// the reserve.
//
// PV_STORAGE_GC_THRESHOLD is a share of free space below which the GC
// runs by itself (WatchStorage), as upstream's main loop does it, once no
// upload came within PV_STORAGE_GC_THRESHOLD_DEFERTIME.
//
// Neither GC may remove what a local update in progress needs: pvr and
// pvcontrol upload the objects first, then the step that refers to them
// (a revision in progress NEW), then run it. No clock tells that safely
// (an upload may take hours; a device without an RTC may jump years), so
// an automatic GC keeps, besides what RUN_GC keeps:
//   - every revision whose progress is not final (storage.Status.Final):
//     a step put and not run is NEW; none, or an unreadable one, is kept
//     too. Only RUN_GC removes those.
//   - every object it did not itself make unreferenced: an object nothing
//     referred to before the GC (a pending update's, whose step is not
//     put yet) is never removed by the upload-triggered GC; nor is an
//     object put since the last step, though a revision the GC removes
//     referred to it (an update sharing an object with an old one: the
//     put found it stored). The threshold GC removes those only after no
//     upload (object or step) came for max(PV_STORAGE_GC_THRESHOLD_DEFERTIME,
//     orphanIdle) on the monotonic clock, the server's start counting as
//     an upload: the update is then over or abandoned, and a supervisor
//     restarted between an update's objects and its step does not lose
//     them.
//
// The automatic GC takes the storage as RUN_GC does, so a command that
// comes while it runs is answered 503 "A command is already in progress"
// with a Retry-After, as for any command in progress: pvcontrol retries.

// orphanIdle is the least time without an upload before the threshold GC
// removes objects nothing refers to: a pvr or pvcontrol uploading an
// update sends its next object, or its step, well within it.
const orphanIdle = 60 * time.Second

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

// msgGCBusy answers an upload that fits only after a GC that cannot run
// now (503): not msgNoSpace, which pvcontrol takes for a full storage.
const msgGCBusy = "Storage is busy: room can be made once the command or upload in progress is over. Try again"

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

// uploads is the server's record of the uploads, for the automatic GC.
// Its times are time.Now()'s, compared on the monotonic clock only.
type uploads struct {
	mu sync.Mutex
	// start is when the server was made: counted as an upload before
	// the threshold GC removes objects nothing refers to.
	start time.Time
	// last is when the last upload (an object or a step) started or
	// ended; zero when none came since the server started.
	last time.Time
	// n counts the uploads: the threshold GC runs again only when
	// something changed since it last ran.
	n uint64
	// gcKey is what the storage looked like after the last threshold GC
	// (thresholdKey), "" when none ran or the free space rose above the
	// threshold since.
	gcKey string
	// claims are the object uploads in flight with a Content-Length.
	claims map[*claim]struct{}
	// put are the objects put (stored, or already there) and not yet
	// named by a step put since: kept by the automatic GC. An object a
	// local update shares with a finished revision is already stored,
	// and referenced; the GC that removes that revision must not take
	// it from the update. Dropped when the threshold GC removes objects
	// nothing refers to: the update is then over or abandoned.
	put map[string]struct{}
}

// objectPut records object sha as put by a local update in progress.
func (s *Server) objectPut(sha string) {
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.put == nil {
		u.put = map[string]struct{}{}
	}
	u.put[sha] = struct{}{}
	s.savePutRecord()
}

// stepPut drops the objects a step just installed names: its trail keeps
// them now.
func (s *Server) stepPut(objects map[string]string) {
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, sha := range objects {
		delete(u.put, sha)
	}
	s.savePutRecord()
}

// pendingObjects are the objects put and named by no step since.
func (s *Server) pendingObjects() []string {
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]string, 0, len(u.put))
	for sha := range u.put {
		out = append(out, sha)
	}
	return out
}

// forgetPending empties the record of the objects put.
func (s *Server) forgetPending() {
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	u.put = nil
	s.savePutRecord()
}

// savePutRecord writes the record of the objects put to the storage's
// PutRecord, with s.recent.mu held. A failure is logged: the record in
// memory stands until the supervisor's end.
func (s *Server) savePutRecord() {
	if s.store == nil || s.store.PutRecord == "" {
		return
	}
	shas := slices.Sorted(maps.Keys(s.recent.put))
	data := []byte(strings.Join(shas, "\n"))
	if len(shas) > 0 {
		data = append(data, '\n')
	}
	if err := storage.WriteFileAtomic(s.store.PutRecord, data, 0o600); err != nil {
		s.log.Warn("ctrl: keep the record of the objects put", "err", err)
	}
}

// loadPutRecord reads back the record a supervisor before this one kept
// at path. What is not an object name is passed over (a record cut by
// a crash): the record only keeps objects, it never removes one.
func (s *Server) loadPutRecord(path string) {
	if path == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("ctrl: read the record of the objects put", "err", err)
		}
		return
	}
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, line := range strings.Split(string(data), "\n") {
		if storage.IsSHA256(line) {
			if u.put == nil {
				u.put = map[string]struct{}{}
			}
			u.put[line] = struct{}{}
		}
	}
}

// claim is an upload's Content-Length, claimed before its body is
// written, and how much of it is written.
type claim struct {
	size    int64
	written atomic.Int64
}

// remaining is what the upload has still to write.
func (c *claim) remaining() int64 { return max(c.size-c.written.Load(), 0) }

// uploaded records an upload (an object or a step) starting or ending.
func (s *Server) uploaded() {
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	u.last = time.Now()
	u.n++
}

// sinceUpload is how long ago the last upload was (ok is false when none
// came since the server started), and how long ago the last upload or
// the server's start was.
func (s *Server) sinceUpload() (d, idle time.Duration, n uint64, ok bool) {
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	idle = time.Since(u.start)
	if u.last.IsZero() {
		return 0, idle, u.n, false
	}
	d = time.Since(u.last)
	return d, min(d, idle), u.n, true
}

// othersClaimed is what the uploads in flight other than self have still
// to write.
func (s *Server) othersClaimed(self *claim) int64 {
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	var n int64
	for c := range u.claims {
		if c != self {
			n += c.remaining()
		}
	}
	return n
}

// release drops an upload's claim once it is over.
func (s *Server) release(c *claim) {
	if c == nil {
		return
	}
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.claims, c)
}

// claimIfFits claims n bytes when they fit above the reserve beside the
// other uploads' claims; it returns the claim, or nil and what was
// available. The look and the claim are one step: two uploads cannot
// both take the same room. A storage that cannot be measured is let
// through: the writes report a full one themselves.
func (s *Server) claimIfFits(root string, n int64, reserved int) (*claim, int64) {
	u := &s.recent
	u.mu.Lock()
	defer u.mu.Unlock()
	avail := int64(1<<63 - 1)
	if sp, err := storage.StatSpace(root); err != nil {
		s.log.Warn("ctrl: free space unknown", "err", err)
	} else {
		avail = sp.Available(reserved)
		for c := range u.claims {
			avail -= c.remaining()
		}
	}
	if n > avail {
		return nil, max(avail, 0)
	}
	c := &claim{size: n}
	if u.claims == nil {
		u.claims = map[*claim]struct{}{}
	}
	u.claims[c] = struct{}{}
	return c, avail
}

// collectAuto runs an automatic GC: it removes the revisions not in use
// whose progress is final and, with freedOnly, only the objects that
// only they referred to; without it every object nothing refers to (see
// above). It takes the storage as RUN_GC does, and does not wait: with a
// command (LOCAL_RUN may be installing a revision) or another write in
// flight it returns errGCBusy. Nothing is removed when root cannot say
// which revisions are in use, or when ctx ended while it asked.
func (s *Server) collectAuto(ctx context.Context, st *Storage, why string, freedOnly bool) (storage.GCReport, error) {
	var rep storage.GCReport
	if !s.cmdMu.TryLock() {
		return rep, errGCBusy
	}
	defer s.cmdMu.Unlock()
	revs, err := s.b.Revisions()
	if err != nil {
		return rep, fmt.Errorf("revisions in use: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("automatic GC: %w", err)
	}
	if !s.storeMu.TryLock() {
		return rep, errGCBusy
	}
	defer s.storeMu.Unlock()
	keep := append(revs.Revisions(), "0")
	// The objects put for an update whose step is not put yet: kept
	// even when a finished revision shares them, but for the sweep
	// after a long idle time, which takes them as abandoned.
	var pending []string
	if freedOnly {
		pending = s.pendingObjects()
	} else {
		s.forgetPending()
	}
	rep, err = st.Layout.GC(storage.GCOptions{Keep: keep, KeepObjects: pending, OnlyFinal: true, OnlyFreed: freedOnly})
	s.log.Info("ctrl: storage garbage collected automatically", "why", why, "keep", keep,
		"unreferenced_objects", !freedOnly, "revisions", rep.Revisions, "objects", len(rep.Objects), "bytes", rep.Bytes)
	return rep, err
}

// admitted is admit's verdict on an upload.
type admitted int

const (
	admitOK     admitted = iota
	admitFull            // 507: it does not fit, even after a GC
	admitGCBusy          // 503: it would fit after a GC that cannot run now
)

// admit claims an object upload of n bytes (its Content-Length) when it
// fits above the reserve beside the other uploads in flight, after an
// automatic GC when it did not at first; the caller releases the claim.
// When it does not fit it has logged upstream's "Space required …"
// naming the object. A size the storage could never hold above its
// reserve is refused without a GC: it would remove revisions for
// nothing.
func (s *Server) admit(ctx context.Context, st *Storage, sha string, n int64) (*claim, admitted) {
	reserved, _, _ := s.spaceSettings()
	root := st.Layout.Root
	c, avail := s.claimIfFits(root, n, reserved)
	if c != nil {
		return c, admitOK
	}
	refuse := func(avail int64) (*claim, admitted) {
		s.log.Warn("ctrl: object refused: "+storage.SpaceMsg(n, avail), "sha256", sha, "reserved_percent", reserved)
		return nil, admitFull
	}
	if sp, err := storage.StatSpace(root); err == nil && n > sp.Total-sp.Percent(reserved) {
		return refuse(avail)
	}
	_, err := s.collectAuto(ctx, st, "object "+sha+" does not fit: "+storage.SpaceMsg(n, avail), true)
	if errors.Is(err, errGCBusy) {
		s.log.Info("ctrl: object deferred: "+storage.SpaceMsg(n, avail)+", the garbage collection must wait",
			"sha256", sha, "err", err)
		return nil, admitGCBusy
	}
	if err != nil {
		s.log.Warn("ctrl: automatic storage garbage collection", "err", err)
	}
	if c, avail = s.claimIfFits(root, n, reserved); c != nil {
		return c, admitOK
	}
	return refuse(avail)
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

// reserveGuard passes an upload's body on, looking at the room left
// every guardEvery bytes (or sooner when less is left): it fails a read
// whose bytes, or with a Content-Length the rest of the body, would eat
// into the reserve. The writer writes every read's bytes before the next
// read, so the free space it sees counts all that came before. It is the
// backstop of the claims (admit): a chunked body claims nothing, and
// other writers (logs, metadata) claim nothing either.
type reserveGuard struct {
	r io.Reader
	// length is the body's Content-Length, -1 when unknown.
	length int64
	// room is what this upload may still write now: the free space above
	// the reserve less the other uploads' claims.
	room func() (int64, error)
	// claim, when not nil, is told how much is written.
	claim *claim
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
		g.passed(n)
		g.budget -= int64(n)
		return n, err
	}
	// Read first: at the end of the body there is nothing to look at.
	n, err := g.r.Read(p)
	if n == 0 {
		return 0, err
	}
	avail, serr := g.room()
	if serr != nil {
		// Unknown: the writes report a full storage themselves.
		g.passed(n)
		g.budget = guardEvery
		return n, err
	}
	avail = max(avail, 0)
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
	g.passed(n)
	g.budget = max(min(guardEvery, avail)-int64(n), 0)
	if g.length >= 0 {
		// The rest of the body fits: look again only for the sake of
		// other writers.
		g.budget = guardEvery - int64(n)
	}
	return n, err
}

// passed counts n bytes passed on to the writer.
func (g *reserveGuard) passed(n int) {
	g.read += int64(n)
	if g.claim != nil {
		g.claim.written.Store(g.read)
	}
}

// WatchStorage runs the threshold GC (PV_STORAGE_GC_THRESHOLD) until ctx
// ends: every interval it looks at the free space, and collects when it
// is below the threshold (thresholdGC). It returns when ctx ends, once a
// GC in flight is over: the caller that waits for it knows nothing is
// removed after (cmd/pantavisor unmounts the storage next). A GC whose
// ctx ended before it began removing removes nothing.
func (s *Server) WatchStorage(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.thresholdGCSafe(ctx)
		}
	}
}

// thresholdGCSafe is thresholdGC, a panic logged rather than the
// supervisor's end.
func (s *Server) thresholdGCSafe(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("ctrl: storage threshold check panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	s.thresholdGC(ctx)
}

// thresholdGC collects when the free space is below the threshold, but
// not within the defer window after an upload, and not again while
// nothing changed since it last did (the revisions on the storage, those
// in use, the uploads, whether objects nothing refers to may go): another
// run would find nothing more to remove. It removes objects nothing
// refers to only after max(defer window, orphanIdle) without an upload,
// the server's start counted as one (see above). It says whether it ran.
func (s *Server) thresholdGC(ctx context.Context) bool {
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
	since, idle, n, seen := s.sinceUpload()
	if seen && since < window {
		return false
	}
	orphans := idle >= max(window, orphanIdle)
	revs, err := s.b.Revisions()
	if err != nil {
		return false
	}
	inUse := strings.Join(revs.Revisions(), ",")
	if k := thresholdKey(st, inUse, n, orphans); k == "" || k == s.gcKeyNow() {
		return false
	}
	why := fmt.Sprintf("free space %d B below %d %% of %d B", sp.Free, threshold, sp.Total)
	if _, err := s.collectAuto(ctx, st, why, !orphans); errors.Is(err, errGCBusy) || ctx.Err() != nil {
		return false
	} else if err != nil {
		s.log.Warn("ctrl: automatic storage garbage collection", "err", err)
	}
	s.setGCKey(thresholdKey(st, inUse, n, orphans))
	return true
}

// thresholdKey is what a GC's result depends on: the revisions stored
// and which of them are finished, those in use, the count of uploads and
// whether objects nothing refers to may go; "" when the revisions cannot
// be listed.
func thresholdKey(st *Storage, inUse string, uploads uint64, orphans bool) string {
	stored, err := st.Layout.Revisions()
	if err != nil {
		return ""
	}
	// Which revisions are finished too: the automatic GC removes only
	// those (OnlyFinal), and a step put (NEW) may end without ever being
	// in use (a LOCAL_RUN refused), which nothing else here would show.
	revs := make([]string, len(stored))
	for i, rev := range stored {
		revs[i] = rev
		if st.Layout.Finished(rev) {
			revs[i] += "!"
		}
	}
	return fmt.Sprintf("%s|%s|%d|%v", strings.Join(revs, ","), inUse, uploads, orphans)
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
