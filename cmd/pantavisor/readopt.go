package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pantavisor/pv/ctrl"
	"github.com/pantavisor/pv/internal/wire"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/runtime/reaper"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"

	"github.com/pantavisor/pv/actors"
)

// The supervisor may die (a Go fatal error, the OOM killer) or ask to be
// re-executed from a new binary (SIGHUP, reaper.ExitReexec); PID 1 then
// starts it again (runtime/reaper) while the containers run on. The new
// one finds, in the same mount and network namespaces:
//   - the work tmpfs with libcontainer's state of every container and
//     the running record below (which revision, under test or not);
//   - the containers' mounts, pool bridges and rules, and eth0s;
//   - the control socket's listener, which PID 1 kept;
//   - the exit statuses of inits that ended in the gap, from PID 1.
// It re-adopts all of it (actors.Adopt) instead of booting.

// runningRecord names the revision the supervisor runs, kept on the work
// tmpfs for the next supervisor.
type runningRecord struct {
	Rev    string       `json:"rev"`
	Trying bool         `json:"trying"`
	Books  actors.Books `json:"books,omitempty"`
}

// journal keeps the running record up to date from the actors' calls
// (Config.OnRevision and OnBooks). A failed write is logged once per
// kind of failure: the device runs on, a restarted supervisor would only
// boot instead of re-adopt, or start its books afresh.
type journal struct {
	work string
	log  *slog.Logger

	mu     sync.Mutex
	rec    runningRecord
	failed bool
}

func (j *journal) revision(rev string, trying bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.rec.Rev != "" && j.rec.Rev != rev {
		// Another revision without a reboot: the kernel command line
		// no longer names the running one (movedMark).
		if err := os.WriteFile(filepath.Join(j.work, movedMark), nil, 0o600); err != nil {
			j.log.Warn("a restarted supervisor that cannot re-adopt may take the boot's revision for the running one", "err", err)
		}
	}
	if j.rec.Rev != rev {
		j.rec.Books = nil
	}
	j.rec.Rev, j.rec.Trying = rev, trying
	j.save()
}

func (j *journal) books(b actors.Books) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rec.Books = b
	j.save()
}

func (j *journal) save() {
	err := saveRunning(j.work, j.rec)
	if err != nil && !j.failed {
		j.log.Warn("a restarted supervisor could not re-adopt", "err", err)
	}
	j.failed = err != nil
}

const runningFile = "running.json"

// movedMark, beside the running record, says the device moved to another
// revision without a reboot since it booted (a non-reboot update, or its
// rollback). Until then the kernel command line's pv_rev names the
// running revision, for a restarted supervisor that finds no record.
const movedMark = "moved"

// movedSinceBoot says whether movedMark is there.
func movedSinceBoot(work string) bool {
	_, err := os.Stat(filepath.Join(work, movedMark))
	return err == nil
}

// saveRunning writes the record atomically (a crash mid-write must leave
// the previous one).
func saveRunning(work string, r runningRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := storage.WriteFileAtomic(filepath.Join(work, runningFile), b, 0o600); err != nil {
		return fmt.Errorf("record the running revision: %w", err)
	}
	return nil
}

// maxRunningRecord bounds what is read: a revision name, a flag and a few
// counters per container.
const maxRunningRecord = 1 << 20

func loadRunning(work string) (runningRecord, error) {
	var r runningRecord
	f, err := os.Open(filepath.Join(work, runningFile))
	if err != nil {
		return r, fmt.Errorf("read the running revision: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRunningRecord+1))
	n := len(b)
	if err != nil {
		return r, fmt.Errorf("read the running revision: %w", err)
	}
	if n > maxRunningRecord {
		return r, errors.New("read the running revision: record too large")
	}
	if err := json.Unmarshal(b[:n], &r); err != nil {
		return r, fmt.Errorf("read the running revision: %w", err)
	}
	return r, nil
}

// controlListener is the control socket: the one PID 1 kept when this
// supervisor re-adopts, else a new one, handed to PID 1 for the next.
func controlListener(sock string, readopt bool, exits *reaper.Exits, log *slog.Logger) (net.Listener, error) {
	if readopt {
		if l := reaper.InheritedListener(sock); l != nil {
			if _, err := os.Lstat(sock); err == nil {
				log.Info("control socket kept by PID 1 taken over", "path", sock)
				return l, nil
			}
			// The previous supervisor was killed as it stopped, after
			// it removed the socket's file: nobody can reach the
			// listener PID 1 kept, and the file is made anew.
			l.Close()
			log.Warn("the control socket PID 1 kept has no file any more (the previous supervisor was stopping): making a new one", "path", sock)
		} else {
			log.Warn("PID 1 kept no control socket: making a new one; containers reach it again once restarted")
		}
	}
	l, err := ctrl.Listen(sock)
	if err != nil {
		return nil, err
	}
	if ul, ok := l.(*net.UnixListener); ok && exits != nil {
		if err := exits.KeepListener(ul); err != nil {
			log.Warn("PID 1 does not hold the control socket: a restarted supervisor will make a new one", "err", err)
		}
	}
	return l, nil
}

// adoptRunning takes over what the previous supervisor left of st and
// logs what it found.
func adoptRunning(st *state.State, books actors.Books, e *engine.Engine, p *engine.Pools, exits *reaper.Exits, log *slog.Logger) *actors.Adoption {
	start := time.Now()
	if n, err := e.RecoverLowers(); err != nil {
		log.Warn("shared image mounts not recovered", "err", err)
	} else {
		log.Debug("shared image mounts recovered", "mounts", n)
	}
	ad := actors.Adopt(st, wire.Adopter(e, p, exits), books, log)
	if err := e.PruneLowers(); err != nil {
		log.Warn("unused image mounts left", "err", err)
	}
	log.Info("re-adopted the previous supervisor's containers", "running", len(ad.Running),
		"ended_in_gap", ad.Ended, "fresh", ad.Fresh, "took", time.Since(start).Round(time.Millisecond))
	return ad
}
