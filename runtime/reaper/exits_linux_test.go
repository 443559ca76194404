package reaper

import (
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	exit0   = syscall.WaitStatus(0)
	exit7   = syscall.WaitStatus(7 << 8)
	killed9 = syscall.WaitStatus(syscall.SIGKILL)
)

// A record names its process by pid and start time: after a pid wrap, an
// older record of another process with the same pid is not the new one's
// exit, neither while it runs nor once it ended.
func TestExitsMatchPidAndStartTime(t *testing.T) {
	e := newTable()
	e.add(procID{pid: 300, start: 1000}, exit0) // an earlier process with pid 300
	if ws, ok := e.Wait(300, 2000, 50*time.Millisecond); ok {
		t.Fatalf("process 300 started at 2000 matched the record of the one started at 1000: %v", ws)
	}
	got := make(chan syscall.WaitStatus, 1)
	go func() {
		ws, ok := e.Wait(300, 2000, 5*time.Second)
		if !ok {
			ws = exit7 // not what is sent: flags the miss
		}
		got <- ws
	}()
	time.Sleep(20 * time.Millisecond) // let it wait
	e.add(procID{pid: 300, start: 2000}, killed9)
	if ws := <-got; ws != killed9 {
		t.Errorf("process 300 started at 2000: status %v, want killed by SIGKILL", ws)
	}
	if ws, ok := e.Wait(300, 1000, 0); !ok || ws != exit0 {
		t.Errorf("process 300 started at 1000: %v, %v; want exit 0, true", ws, ok)
	}
}

// A wait that times out leaves the other waits for the same process
// waiting: the record reaches the one still waiting.
func TestExitsTimeoutLeavesOtherWaiters(t *testing.T) {
	e := newTable()
	got := make(chan bool, 1)
	go func() {
		_, ok := e.Wait(500, 42, 5*time.Second)
		got <- ok
	}()
	time.Sleep(20 * time.Millisecond) // let it wait
	if _, ok := e.Wait(500, 42, 10*time.Millisecond); ok {
		t.Fatal("a record before any came")
	}
	e.add(procID{pid: 500, start: 42}, exit7)
	select {
	case ok := <-got:
		if !ok {
			t.Error("the longer wait got no record")
		}
	case <-time.After(2 * time.Second):
		t.Error("the longer wait was dropped when the shorter one timed out: no record for 2 s after it came")
	}
}

// An unknown start time (0) matches nothing: a record without one is not
// taken for a known process, and a process whose start time is unknown
// gets no record, at once.
func TestExitsUnknownStartTimeMatchesNothing(t *testing.T) {
	e := newTable()
	e.add(procID{pid: 400, start: 0}, exit0)
	if ws, ok := e.Wait(400, 1234, 50*time.Millisecond); ok {
		t.Errorf("a record with no start time matched process 400 started at 1234: %v", ws)
	}
	begin := time.Now()
	if ws, ok := e.Wait(400, 0, 5*time.Second); ok {
		t.Errorf("a process with no start time matched a record: %v", ws)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Wait with no start time took %s, want an answer at once", d)
	}
}

// record is one message of the channel as PID 1 sends it: the full
// struct pv_exit, or the pid and status of an older PID 1.
func record(pid int32, status syscall.WaitStatus, start uint64, legacy bool) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(pid))
	b = binary.NativeEndian.AppendUint32(b, uint32(status))
	if legacy {
		return b
	}
	return binary.NativeEndian.AppendUint64(b, start)
}

// seqpacket returns both ends of a SEQPACKET socket pair, as PID 1 makes.
func seqpacket(t *testing.T) (pid1, supervisor *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[1], true); err != nil {
		t.Fatal(err)
	}
	pid1, supervisor = os.NewFile(uintptr(fds[0]), "pid1"), os.NewFile(uintptr(fds[1]), "supervisor")
	t.Cleanup(func() { pid1.Close(); supervisor.Close() })
	return pid1, supervisor
}

// The reader takes records of this PID 1 (with the start time) and of an
// older one (pid and status only, which match nothing), in their order.
func TestExitsReadsCurrentAndLegacyRecords(t *testing.T) {
	pid1, sup := seqpacket(t)
	e := newExits(sup, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, m := range [][]byte{record(500, exit0, 0, true), record(501, exit7, 4242, false)} {
		if _, err := pid1.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if ws, ok := e.Wait(501, 4242, 5*time.Second); !ok || ws != exit7 {
		t.Fatalf("record of 501 started at 4242: %v, %v; want exit 7, true", ws, ok)
	}
	// The legacy record came first: it was read, and kept as nothing.
	e.mu.Lock()
	unknown, n := e.unknown, len(e.seen)
	e.mu.Unlock()
	if !unknown || n != 1 {
		t.Errorf("after a legacy record and a full one: unknown %v, %d kept; want true, 1", unknown, n)
	}
}

// A supervisor older than the start time (a rollback re-executed under
// this PID 1) reads each record into 8 bytes: it gets the pid and status
// it knew, and the next record whole (SEQPACKET cuts a message to the
// buffer and drops the rest).
func TestOldReaderGetsRecordPrefix(t *testing.T) {
	pid1, sup := seqpacket(t)
	for _, m := range [][]byte{record(600, exit7, 99, false), record(601, killed9, 100, false)} {
		if _, err := pid1.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []struct {
		pid int32
		ws  syscall.WaitStatus
	}{{600, exit7}, {601, killed9}} {
		buf := make([]byte, legacyExitRecordSize)
		n, err := sup.Read(buf)
		if err != nil || n != len(buf) {
			t.Fatalf("read: %d bytes, %v; want %d", n, err, len(buf))
		}
		pid, ws := int32(binary.NativeEndian.Uint32(buf)), syscall.WaitStatus(binary.NativeEndian.Uint32(buf[4:]))
		if pid != want.pid || ws != want.ws {
			t.Errorf("old reader got pid %d status %v, want %d %v", pid, ws, want.pid, want.ws)
		}
	}
}
