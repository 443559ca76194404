package reaper

// #include "cstage_linux.h"
import "C"

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Exits is the supervisor's end of PID 1's exit channel: the wait
// statuses of the orphans PID 1 reaped. A container's init is the
// supervisor's child (libcontainer clones it with CLONE_PARENT) until the
// supervisor dies; then it is PID 1's, and only PID 1 can learn how it
// ended. A supervisor that re-adopts it asks here.
//
// PID 1 sends the last orphans it reaped when it starts a supervisor, then
// each one as it reaps it. A record names its process by pid and start
// time (struct pv_exit): after a pid wrap, the pid of an adopted init may
// be in an older record of another process, which must not pass for the
// init's. A record whose start time is unknown (a PID 1 older than the
// start time, or /proc unreadable) matches nothing: no status is better
// than another process's.
type Exits struct {
	f *os.File

	mu      sync.Mutex
	seen    map[procID]syscall.WaitStatus
	order   []procID // in arrival order, to bound seen
	waiters map[procID][]chan syscall.WaitStatus
	unknown bool // a record without a start time came (logged once)
}

// procID names a process for good: its pid and its start time (field 22
// of /proc/<pid>/stat), which no later process of that pid shares.
type procID struct {
	pid   int
	start uint64
}

// maxExits bounds what Exits remembers: PID 1 keeps its last 256.
const maxExits = 1024

// The sizes of a record on the wire: the whole struct pv_exit, and the
// one a PID 1 older than its start time sends (pid and status).
const (
	exitRecordSize       = C.sizeof_struct_pv_exit
	legacyExitRecordSize = unsafe.Offsetof(C.struct_pv_exit{}.start)
)

// OpenExits takes the channel PID 1 left at its descriptor and reads it
// in the background; it returns nil and no error when there is none (the
// supervisor was not started by the C reaper). The descriptor is made
// close-on-exec: no container or tool inherits it. Call it after the
// supervisor's own re-execution (driver.PrepareExeSealing), which needs
// the descriptor open.
func OpenExits(log *slog.Logger) (*Exits, error) {
	var st unix.Stat_t
	if err := unix.Fstat(exitsFD, &st); err != nil {
		return nil, nil // no channel
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("exit channel: descriptor %d is not a socket", exitsFD)
	}
	unix.CloseOnExec(exitsFD)
	if err := unix.SetNonblock(exitsFD, true); err != nil {
		return nil, fmt.Errorf("exit channel: %w", err)
	}
	return newExits(os.NewFile(exitsFD, "pid1-exits"), log), nil
}

// newExits reads records from f, a non-blocking SEQPACKET socket, in the
// background.
func newExits(f *os.File, log *slog.Logger) *Exits {
	e := newTable()
	e.f = f
	go e.read(log)
	return e
}

// newTable is an Exits that reads nothing: records come from add.
func newTable() *Exits {
	return &Exits{seen: map[procID]syscall.WaitStatus{}, waiters: map[procID][]chan syscall.WaitStatus{}}
}

// read receives records until the channel closes (PID 1 never closes it
// while this process lives). A panic is reported, never fatal.
func (e *Exits) read(log *slog.Logger) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("exit channel reader panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	var rec C.struct_pv_exit
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&rec)), unsafe.Sizeof(rec))
	for {
		rec = C.struct_pv_exit{} // a legacy record leaves start unknown
		n, err := e.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				log.Warn("exit channel closed", "err", err)
			}
			return
		}
		// A longer record from a newer PID 1 was cut to what this one
		// knows, and reads as a whole one.
		if n != exitRecordSize && n != int(legacyExitRecordSize) {
			continue
		}
		if rec.start == 0 && e.noteUnknown() {
			log.Warn("PID 1 sent an exit status without the process's start time: it matches no process, and an adopted container ending so is reported with no exit status",
				"pid", int(rec.pid), "record_bytes", n)
		}
		e.add(procID{int(rec.pid), uint64(rec.start)}, syscall.WaitStatus(rec.status))
	}
}

// noteUnknown says whether this is the first record without a start time.
func (e *Exits) noteUnknown() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	first := !e.unknown
	e.unknown = true
	return first
}

func (e *Exits) add(p procID, ws syscall.WaitStatus) {
	if p.start == 0 {
		return // matches nothing: see Exits
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.seen[p]; !ok {
		e.order = append(e.order, p)
		if len(e.order) > maxExits {
			delete(e.seen, e.order[0])
			e.order = e.order[1:]
		}
	}
	e.seen[p] = ws
	for _, ch := range e.waiters[p] {
		ch <- ws // buffered
	}
	delete(e.waiters, p)
}

// Wait returns how the process pid that started at start (field 22 of
// /proc/<pid>/stat; libcontainer's InitProcessStartTime) ended, as PID 1
// reaped it, waiting up to timeout for the record; false when none came.
// Only a record of that pid and that start time is taken; an unknown
// start time (0) matches no record, and Wait returns false at once. Call
// it once the process is known to be gone (its pidfd polled readable, or
// it no longer exists).
func (e *Exits) Wait(pid int, start uint64, timeout time.Duration) (syscall.WaitStatus, bool) {
	if e == nil || start == 0 {
		return 0, false
	}
	p := procID{pid, start}
	e.mu.Lock()
	if ws, ok := e.seen[p]; ok {
		e.mu.Unlock()
		return ws, true
	}
	ch := make(chan syscall.WaitStatus, 1)
	e.waiters[p] = append(e.waiters[p], ch)
	e.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ws := <-ch:
		return ws, true
	case <-t.C:
		e.mu.Lock()
		defer e.mu.Unlock()
		// Only this wait gives up: another one for the same process,
		// with a longer timeout, still gets the record when it comes.
		e.waiters[p] = slices.DeleteFunc(e.waiters[p], func(c chan syscall.WaitStatus) bool { return c == ch })
		if len(e.waiters[p]) == 0 {
			delete(e.waiters, p)
		}
		ws, ok := e.seen[p]
		return ws, ok
	}
}

// Close stops the reader.
func (e *Exits) Close() error {
	if e == nil {
		return nil
	}
	return e.f.Close()
}

// ctrlFD is where a supervisor PID 1 started again finds the control
// socket's listener.
const ctrlFD = C.CTRL_FD

// KeepListener hands the control socket's listener to PID 1, which holds
// it for the next supervisor (InheritedListener): the socket keeps its
// inode, which every container has bind-mounted, and clients that connect
// while no supervisor runs wait in its backlog instead of being refused.
// Without the channel (not under the C reaper) it does nothing.
func (e *Exits) KeepListener(l *net.UnixListener) error {
	if e == nil {
		return nil
	}
	rc, err := l.SyscallConn()
	if err != nil {
		return fmt.Errorf("hand the control socket to PID 1: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.Sendmsg(exitsFD, []byte{C.CTRL_MSG}, unix.UnixRights(int(fd)), nil, 0)
	}); err != nil {
		return fmt.Errorf("hand the control socket to PID 1: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("hand the control socket to PID 1: %w", serr)
	}
	return nil
}

// InheritedListener returns the control socket's listener PID 1 kept from
// the previous supervisor, when it is there and listens at path; nil
// otherwise (the caller listens afresh). Its descriptor is made
// close-on-exec either way.
func InheritedListener(path string) *net.UnixListener {
	var st unix.Stat_t
	if err := unix.Fstat(ctrlFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil
	}
	f := os.NewFile(ctrlFD, "pv-ctrl")
	defer f.Close() // FileListener made its own descriptor
	l, err := net.FileListener(f)
	if err != nil {
		return nil
	}
	ul, ok := l.(*net.UnixListener)
	if !ok || ul.Addr().String() != path {
		l.Close()
		return nil
	}
	// A clean stop removes the file, as for a socket made by Listen.
	ul.SetUnlinkOnClose(true)
	return ul
}
