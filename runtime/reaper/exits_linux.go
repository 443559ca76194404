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
// each one as it reaps it; Exits keeps the newest status of each pid.
type Exits struct {
	f *os.File

	mu      sync.Mutex
	seen    map[int]syscall.WaitStatus
	order   []int // pids in arrival order, to bound seen
	waiters map[int][]chan syscall.WaitStatus
}

// maxExits bounds what Exits remembers: PID 1 keeps its last 256.
const maxExits = 1024

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
	e := &Exits{f: os.NewFile(exitsFD, "pid1-exits"), seen: map[int]syscall.WaitStatus{},
		waiters: map[int][]chan syscall.WaitStatus{}}
	go e.read(log)
	return e, nil
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
		n, err := e.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				log.Warn("exit channel closed", "err", err)
			}
			return
		}
		if n != len(buf) {
			continue
		}
		e.add(int(rec.pid), syscall.WaitStatus(rec.status))
	}
}

func (e *Exits) add(pid int, ws syscall.WaitStatus) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.seen[pid]; !ok {
		e.order = append(e.order, pid)
		if len(e.order) > maxExits {
			delete(e.seen, e.order[0])
			e.order = e.order[1:]
		}
	}
	e.seen[pid] = ws
	for _, ch := range e.waiters[pid] {
		ch <- ws // buffered
	}
	delete(e.waiters, pid)
}

// Wait returns how pid ended, as PID 1 reaped it, waiting up to timeout
// for the record; false when none came. Call it once the process is known
// to be gone (its pidfd polled readable, or it no longer exists).
func (e *Exits) Wait(pid int, timeout time.Duration) (syscall.WaitStatus, bool) {
	if e == nil {
		return 0, false
	}
	e.mu.Lock()
	if ws, ok := e.seen[pid]; ok {
		e.mu.Unlock()
		return ws, true
	}
	ch := make(chan syscall.WaitStatus, 1)
	e.waiters[pid] = append(e.waiters[pid], ch)
	e.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ws := <-ch:
		return ws, true
	case <-t.C:
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.waiters, pid)
		ws, ok := e.seen[pid]
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
