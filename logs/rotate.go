// Package logs keeps the device's log directory (<storage>/logs) within
// its limits: pantavisor's own log and every container's console log are
// files their writers append to directly (a container's console is a
// file descriptor of its init, which outlives pantavisor's own process),
// so the sizes are enforced from outside the writers.
//
// A file over PV_LOG_MAXSIZE is rotated by copy and truncate: its last
// PV_LOG_MAXSIZE bytes go to <file>.1 (replacing the previous one), then it
// is truncated to zero; the writer, appending, carries on at the new end.
// What is written during the copy is lost: the price of never holding a
// writer (a flood loses more, a steady log the odd line). A directory
// over PV_LOG_DIR_MAXSIZE loses its oldest files first — rotated copies,
// then other revisions' logs, then the current revision's live files,
// largest first (a flooding container's console before pantavisor's own
// log and the quiet containers'); rotated copies are removed, live logs
// emptied, since a writer may hold one open — until it is under the limit less a hysteresis
// margin (1/PV_LOG_HYSTERESIS_FACTOR of it), so a steady writer does not
// make it sweep at every write. A tree holding more than MaxFiles files
// of any kind (a container making empty files, symlinks or FIFOs without
// end would take the storage's inodes, which no size limit sees) loses
// those of the directories holding the most first, each cut down to one
// common level.
//
// A container may have its log directory bind-mounted, and then put a
// symlink, a FIFO or a device node anywhere in it at any moment: every
// file the keeper truncates, copies or removes is reached from the tree's
// root without following a symlink, and must be a regular file
// (internal/nofollow).
package logs

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/nofollow"
)

// Limits are the sizes the directory is kept within.
type Limits struct {
	// MaxFile is the size a log file is rotated at; 0 never rotates.
	MaxFile int64
	// MaxDir is the size of the whole directory tree; 0 is no limit.
	MaxDir int64
	// MaxFiles is the number of files (of any kind but directories) in
	// the tree; 0 is no limit. Over it, the directory holding the most
	// loses its files first (see enforceCount).
	MaxFiles int
	// Hysteresis: a sweep goes down to MaxDir - MaxDir/Hysteresis (0
	// or 1: down to MaxDir), and to MaxFiles - MaxFiles/Hysteresis.
	Hysteresis int64
}

// DefaultMaxFiles is the MaxFiles the device's keeper applies: far more
// than its containers' console logs and their copies over the revisions
// kept, far fewer than the inodes of the smallest storage.
const DefaultMaxFiles = 10000

// Keeper watches one log directory tree and keeps it within its limits.
type Keeper struct {
	Dir    string
	Limits Limits
	// LimitsNow, when set, gives the limits at each check instead of
	// Limits: the configuration may change them while the device runs
	// (a revision's OEM configuration, user-meta).
	LimitsNow func() Limits
	// Current is the running revision's log directory (under Dir), whose
	// live files go last; SetCurrent changes it while the keeper runs.
	Current string
	Log     *slog.Logger

	mu sync.Mutex
	// failing holds the files whose rotation failed, to warn once per
	// file until it succeeds: the warning is itself a write to the tree.
	failing map[string]bool
	// Rotations and Removed count what the keeper did, for tests and
	// GET /metrics.
	Rotations, Removed atomic.Int64
}

// sweepEvery is the fallback sweep when no change was notified (a writer
// on a file that existed before the watch, an inotify queue overflow).
var sweepEvery = 5 * time.Second

// checkGap is the longest wait between a check that found nothing to do
// and the next: a check walks the whole tree, and without a wait a
// container writing a line at a time far under every limit (and
// pantavisor's own log, which is in the tree) cost a walk per line, most
// of a CPU. The wait is shorter the sooner the writers, at the rate seen
// since the last check, would reach a limit (see pace), and there is none
// after a check that rotated or swept: a flood is kept within its limits
// as closely as without a wait.
var checkGap = 250 * time.Millisecond

// check is what one check saw: the tree's size when it began and when it
// ended, the largest live file, and the limits it applied.
type check struct {
	at            time.Time
	before, after int64
	largest       int64
	lim           Limits
	acted         bool
}

// pace returns how long to wait after check c, the one before it prev,
// and the writers' rate as now estimated from rate, the last estimate:
// the bytes written between the two checks over the time between them,
// or, when that shows less (a writer descheduled between two quick
// checks writes nothing), half the last estimate, so that a flood is not
// forgotten at the first quiet instant. The wait is half the time the
// writers take at that rate to fill what is left under the nearer limit,
// at most checkGap; none after a check that acted, or the one after it
// (which finds what the last one left, and shows no rate).
func pace(prev, c check, rate float64) (time.Duration, float64) {
	if elapsed := c.at.Sub(prev.at); !prev.at.IsZero() && elapsed > 0 {
		rate = max(float64(max(c.before-prev.after, 0))/elapsed.Seconds(), rate/2)
	}
	if c.acted || prev.acted {
		return 0, rate
	}
	room := int64(-1)
	if c.lim.MaxFile > 0 {
		room = max(c.lim.MaxFile-c.largest, 0)
	}
	if c.lim.MaxDir > 0 {
		if r := max(c.lim.MaxDir-c.after, 0); room < 0 || r < room {
			room = r
		}
	}
	if room < 0 || rate <= 0 {
		return checkGap, rate
	}
	wait := time.Duration(float64(room) / rate / 2 * float64(time.Second))
	return min(wait, checkGap), rate
}

// restartAfter is how long the keeper waits before it starts again after
// a panic.
var restartAfter = time.Second

// Run watches the tree with inotify (every directory, as they appear) and
// enforces the limits after each batch of changes and every sweepEvery,
// until ctx ends. A failure of the watch falls back to the periodic sweep:
// logs must never stop the device. A panic is logged and the keeper
// starts again after restartAfter: stopped for good, it left the log
// sizes unenforced until the next boot.
func (k *Keeper) Run(ctx context.Context) {
	if k.Log == nil {
		k.Log = slog.Default()
	}
	for !k.run(ctx) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(restartAfter):
		}
	}
}

// run is one life of Run; it reports false when it ended by a panic.
func (k *Keeper) run(ctx context.Context) (ended bool) {
	defer func() {
		if p := recover(); p != nil {
			k.Log.Error("log keeper panicked; starting again", "panic", fmt.Sprint(p), "in", restartAfter)
			ended = false
		}
	}()
	if err := os.MkdirAll(k.Dir, 0o755); err != nil {
		k.Log.Error("log keeper: log directory", "err", err)
		return true
	}
	w, err := newWatch(k.Dir)
	if err != nil {
		k.Log.Warn("log keeper: no inotify, sweeping periodically", "err", err)
	}
	if w != nil {
		// Closed when ctx ends (a read under way ends with it) or when
		// this life ends, by a panic included.
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-ctx.Done():
			case <-done:
			}
			w.close()
		}()
	}
	prev, rate := k.enforce(), 0.0
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	events := make(chan struct{}, 1)
	if w != nil {
		go func() {
			defer func() {
				if p := recover(); p != nil {
					k.Log.Error("log keeper: watch panicked; sweeping periodically", "panic", fmt.Sprint(p))
				}
			}()
			w.loop(events)
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return true
		case <-tick.C:
		case <-events:
		}
		c := k.enforce()
		var wait time.Duration
		wait, rate = pace(prev, c, rate)
		prev = c
		if wait <= 0 {
			continue
		}
		// Events meanwhile wait in the channel: one check after the wait.
		select {
		case <-ctx.Done():
			return true
		case <-time.After(wait):
		}
	}
}

// SetCurrent names the running revision's log directory after a
// non-reboot update.
func (k *Keeper) SetCurrent(dir string) {
	k.mu.Lock()
	k.Current = dir
	k.mu.Unlock()
}

// Enforce rotates what is over MaxFile and sweeps the tree under MaxDir.
func (k *Keeper) Enforce() { k.enforce() }

// enforce is Enforce; it reports what it saw and whether it rotated or
// emptied anything.
func (k *Keeper) enforce() (c check) {
	k.mu.Lock()
	defer k.mu.Unlock()
	lim := k.Limits
	if k.LimitsNow != nil {
		lim = k.LimitsNow()
	}
	files, before := k.scan()
	c = check{at: time.Now(), before: before, after: before, lim: lim}
	for _, f := range files {
		if f.live {
			c.largest = max(c.largest, f.size)
		}
	}
	for i := range files {
		f := &files[i]
		if lim.MaxFile <= 0 || f.rotated || f.size <= lim.MaxFile {
			continue
		}
		err := k.at(f.path, unix.O_RDONLY, func(dir int, name string) error { return rotate(dir, name, lim.MaxFile) })
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			// No room for the copy: the storage is full, and the live
			// file, over its limit, is part of why. Its lines are
			// lost rather than the storage kept full.
			if terr := k.at(f.path, unix.O_PATH, truncate); terr != nil {
				if k.warnOnce(f.path) {
					k.Log.Warn("log over its limit, and no room to rotate it", "file", f.path, "err", errors.Join(err, terr))
				}
				continue
			}
			if k.warnOnce(f.path) {
				k.Log.Warn("log over its limit emptied without a copy: no room for one", "file", f.path)
			}
		} else if err != nil {
			if k.warnOnce(f.path) {
				k.Log.Warn("log rotation failed", "file", f.path, "err", err)
			}
			continue
		} else {
			delete(k.failing, f.path)
		}
		k.Rotations.Add(1)
		c.acted = true
	}
	if lim.MaxDir <= 0 && lim.MaxFiles <= 0 {
		return c
	}
	// The tree walked again only when rotations changed it: a check that
	// rotated nothing (most, of a chatty but small log) walks it once.
	total := before
	if c.acted {
		files, total = k.scan()
	}
	c.after = total
	if lim.MaxDir > 0 {
		files = k.sweepBytes(files, lim, &c)
	}
	if lim.MaxFiles > 0 {
		k.sweepCount(files, lim, &c)
	}
	return c
}

// sweepBytes brings the tree under lim.MaxDir, if it is over, less the
// hysteresis, and returns the files left (c.after is the tree's size).
func (k *Keeper) sweepBytes(files []logFile, lim Limits, c *check) []logFile {
	total := c.after
	if total <= lim.MaxDir {
		delete(k.failing, k.Dir)
		return files
	}
	target := lim.MaxDir
	if h := lim.Hysteresis; h > 1 {
		target -= lim.MaxDir / h
	}
	slices.SortStableFunc(files, func(a, b logFile) int {
		c := cmp.Compare(k.class(a), k.class(b))
		if c == 0 && k.class(a) == classCurrentLive {
			// The largest first: a live log far over its share is the
			// one being flooded, and oldest first would truncate
			// pantavisor's own log and the quiet containers' (the
			// oldest written) before it.
			c = cmp.Compare(b.size, a.size)
		}
		return cmp.Or(c, a.mtime.Compare(b.mtime))
	})
	left := files[:0]
	for _, f := range files {
		if total <= target || f.other {
			left = append(left, f)
			continue
		}
		if f.live {
			// Live logs are truncated, not removed: their writers
			// may hold them open, those of other revisions' too (a
			// container kept by a non-reboot update writes on in the
			// revision it was started in), and a removed file they
			// append to would grow unseen until the storage is full.
			if err := k.at(f.path, unix.O_PATH, truncate); err == nil {
				total -= f.size
				k.Removed.Add(1)
				c.acted = true
			}
			left = append(left, f)
			continue
		}
		if err := k.at(f.path, unix.O_PATH, remove); err == nil {
			total -= f.size
			k.Removed.Add(1)
			c.acted = true
			continue
		}
		left = append(left, f)
	}
	if total > lim.MaxDir && k.warnOnce(k.Dir) {
		k.Log.Warn("log directory over its limit", "dir", k.Dir, "bytes", total, "limit", lim.MaxDir)
	} else if total <= lim.MaxDir {
		delete(k.failing, k.Dir)
	}
	c.after = total
	return left
}

// sweepCount brings the number of files under lim.MaxFiles, if it is
// over, less the hysteresis. A container with its log directory mounted
// that makes files without end (empty ones, which no size limit sees;
// symlinks, FIFOs) would otherwise take every inode of the storage: no
// update, no object, no state written. The files go from the directories
// holding the most (a revision's container's, or anything else directly
// under the tree), each down to one common level, so that the flood
// loses its files and pantavisor's own log and the quiet containers'
// theirs only if they too are that many; within a directory, rotated
// copies first, then the oldest. Live logs are removed here too: a
// writer that keeps appending to one removed grows it unseen, but a
// container can do that to the storage with a file of its own anyway.
func (k *Keeper) sweepCount(files []logFile, lim Limits, c *check) {
	target := lim.MaxFiles
	if h := int(lim.Hysteresis); h > 1 {
		target -= lim.MaxFiles / h
	}
	if len(files) <= lim.MaxFiles {
		delete(k.failing, k.Dir+" files")
		return
	}
	groups := map[string][]logFile{}
	for _, f := range files {
		g := k.owner(f.path)
		groups[g] = append(groups[g], f)
	}
	// The level: the highest count every group is cut down to that
	// leaves at most target files in all.
	over := func(level int) int {
		n := 0
		for _, g := range groups {
			n += max(len(g)-level, 0)
		}
		return n
	}
	excess := len(files) - target
	lo, hi := 0, 0
	for _, g := range groups {
		hi = max(hi, len(g))
	}
	for lo < hi { // the largest level with over(level) >= excess
		mid := (lo + hi + 1) / 2
		if over(mid) >= excess {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	removed, failed := 0, 0
	for _, g := range groups {
		if len(g) <= lo {
			continue
		}
		slices.SortStableFunc(g, func(a, b logFile) int {
			return cmp.Or(-cmp.Compare(btoi(a.rotated), btoi(b.rotated)), a.mtime.Compare(b.mtime))
		})
		for _, f := range g[:len(g)-lo] {
			if err := k.at(f.path, unix.O_PATH, remove); err != nil {
				failed++
				continue
			}
			removed++
			k.Removed.Add(1)
			c.acted = true
		}
	}
	// Once until a check finds the tree under its limit again: a flood
	// makes a check act at every turn.
	if k.warnOnce(k.Dir + " files") {
		k.Log.Warn("log directory over its file limit: the files of the directories holding the most removed",
			"dir", k.Dir, "files", len(files), "limit", lim.MaxFiles, "removed", removed, "not removed", failed)
	}
}

// owner is the directory a file counts to for MaxFiles: its revision's
// container's (the first two levels under the tree), or the level it is
// at when it is above that.
func (k *Keeper) owner(path string) string {
	rel, err := filepath.Rel(k.Dir, path)
	if err != nil {
		return ""
	}
	parts := strings.SplitN(rel, string(filepath.Separator), 3)
	if len(parts) < 3 {
		return filepath.Dir(rel)
	}
	return filepath.Join(parts[0], parts[1])
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// warnOnce says whether a failure about path is the first since its last
// success (k.mu held).
func (k *Keeper) warnOnce(path string) bool {
	if k.failing == nil {
		k.failing = map[string]bool{}
	}
	if k.failing[path] {
		return false
	}
	k.failing[path] = true
	return true
}

// class orders the files a sweep removes: rotated copies, then other
// revisions' logs, then the current revision's live ones; oldest first
// within each (the sort's second key), but the current live ones
// largest first.
func (k *Keeper) class(f logFile) int {
	switch {
	case f.rotated:
		return 0
	case !f.inCurrent(k.Current):
		return 1
	}
	return classCurrentLive
}

// classCurrentLive is the class of the current revision's live logs.
const classCurrentLive = 2

type logFile struct {
	path    string
	size    int64
	mtime   time.Time
	rotated bool
	live    bool
	// other: not a regular file (a symlink, a FIFO, a socket, a device
	// node a container put there): never a log, counted for MaxFiles
	// only, and only ever removed.
	other bool
}

func (f logFile) inCurrent(cur string) bool {
	return cur != "" && strings.HasPrefix(f.path, cur+string(filepath.Separator))
}

func (k *Keeper) scan() ([]logFile, int64) {
	var out []logFile
	var total int64
	filepath.WalkDir(k.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			out = append(out, logFile{path: p, other: true})
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		rot := strings.HasSuffix(p, ".1")
		out = append(out, logFile{path: p, size: fi.Size(), mtime: fi.ModTime(), rotated: rot, live: !rot})
		total += fi.Size()
		return nil
	})
	return out, total
}

// at calls fn with the directory of path (opened with flags: O_PATH, or
// O_RDONLY to sync it) and path's name in it. path is a file the walk of
// k.Dir found; what is below k.Dir may be a container's (its log
// directory bind-mounted into it), and may have become a symlink since:
// the directory is opened without following any (nofollow.Dir), and fn
// uses names in it that it does not follow either, so nothing outside
// the tree is ever truncated, written or removed.
func (k *Keeper) at(path string, flags int, fn func(dir int, name string) error) error {
	rel, err := filepath.Rel(k.Dir, filepath.Dir(path))
	if err != nil {
		return err
	}
	root, err := unix.Open(k.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: k.Dir, Err: err}
	}
	defer unix.Close(root)
	dir, err := nofollow.Dir(root, rel, flags)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer unix.Close(dir)
	if err := fn(dir, filepath.Base(path)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// truncate empties the regular file name in dir.
func truncate(dir int, name string) error {
	f, err := nofollow.Regular(dir, name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// remove unlinks name in dir (a symlink there is removed itself).
func remove(dir int, name string) error {
	return unix.Unlinkat(dir, name, 0)
}

// rotate copies the last keep bytes of name to name.1 (through a
// temporary file and a rename) and truncates name, all in the directory
// dir (readable: it is synced). Only the tail is copied: a file far over
// its limit (a flood between two checks) costs one file's worth of copy,
// not the flood's.
func rotate(dir int, name string, keep int64) error {
	src, err := nofollow.Regular(dir, name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	if fi, err := src.Stat(); err == nil && fi.Size() > keep {
		if _, err := src.Seek(fi.Size()-keep, io.SeekStart); err != nil {
			return err
		}
	}
	// A temporary file a crash left, or one planted (a symlink to a
	// file the copy would overwrite), is removed, never followed, and
	// the copy made anew where nothing is.
	tmp := name + ".1.tmp"
	if err := unix.Unlinkat(dir, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: tmp, Err: err}
	}
	dst, err := nofollow.Regular(dir, tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	// Bounded: a writer appending as fast as the copy reads would
	// otherwise keep it going.
	if _, err = io.CopyN(dst, src, keep); errors.Is(err, io.EOF) {
		err = nil
	}
	// The copy is on disk under its name before the live file is
	// emptied: the other way round, a power cut or a watchdog reset in
	// between could leave both empty, losing the lines that tell why.
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if rerr := unix.Renameat(dir, tmp, dir, name+".1"); rerr != nil {
			err = &os.PathError{Op: "rename", Path: tmp, Err: rerr}
		}
	}
	if err == nil {
		if serr := unix.Fsync(dir); serr != nil {
			err = &os.PathError{Op: "sync", Path: ".", Err: serr}
		}
	}
	if err == nil {
		err = src.Truncate(0)
	}
	if err != nil {
		unix.Unlinkat(dir, tmp, 0)
	}
	return err
}

// watch is an inotify watch on every directory of a tree.
type watch struct {
	root string
	// f reads the events through Go's poller, so close ends a read under
	// way; fd is its descriptor, for adding watches.
	f  *os.File
	fd int
}

func newWatch(root string) (*watch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	w := &watch{root: root, fd: fd, f: os.NewFile(uintptr(fd), "inotify")}
	if err := w.addTree(); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// addTree watches every directory of the tree; a directory watched
// already keeps its watch.
func (w *watch) addTree() error {
	return filepath.WalkDir(w.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			// IN_DONT_FOLLOW: a directory swapped for a link since
			// the walk saw it does not put a watch outside the tree.
			_, err = unix.InotifyAddWatch(w.fd, p, unix.IN_MODIFY|unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DONT_FOLLOW|unix.IN_ONLYDIR)
		}
		return err
	})
}

func (w *watch) close() { w.f.Close() }

// loop reads events until the watch is closed, watches new directories and
// signals changes, coalesced: one pending signal at most. A burst of
// appends is a burst of events, read in batches, so a flood of writes
// costs one check per batch.
func (w *watch) loop(events chan<- struct{}) {
	buf := make([]byte, 64*1024)
	for {
		n, err := w.f.Read(buf)
		if err != nil || n <= 0 {
			return
		}
		newDir := false
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			size := binary.NativeEndian.Uint32(buf[off+12:])
			newDir = newDir || mask&unix.IN_ISDIR != 0
			off += unix.SizeofInotifyEvent + int(size)
		}
		if newDir {
			w.addTree()
		}
		select {
		case events <- struct{}{}:
		default:
		}
	}
}
