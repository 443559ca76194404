package xconnect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// A connection made with another uid's credentials: a D-Bus daemon takes
// the uid it authenticates from the socket's peer credentials, which the
// kernel records at connect(2) from the connecting process. Pantavisor is
// PID 1 and never changes the credentials of its own threads, so a short
// helper process does it: pantavisor starts itself again with the target
// socket as an O_PATH descriptor and one end of a socket pair, under the
// uid and gid; the helper connects to the descriptor's /proc/self/fd name
// and hands the connected socket back over the pair (SCM_RIGHTS), then
// exits. The peer credentials stay those of the connect.

// helperEnv marks the helper's process; HelperMain acts on it.
const helperEnv = "_PV_XCONNECT_DIAL"

// HelperMain makes this process the dial helper when it was started as
// one, and never returns then; otherwise it returns at once. A binary that
// dials as another uid (pantavisor, tests of it) calls it first thing in
// main or TestMain.
func HelperMain() {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	// fd 3: the target socket (O_PATH); fd 4: the pair to send it back on.
	c, err := net.Dial("unix", "/proc/self/fd/3")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pv-xconnect-dial:", err)
		os.Exit(1)
	}
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		os.Exit(1)
	}
	if err := unix.Sendmsg(4, []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		fmt.Fprintln(os.Stderr, "pv-xconnect-dial: hand back:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helpers bounds the dial helpers alive at once, process-wide: each is a
// process running the whole binary, and holds a thread of this process
// locked to its wait. A consumer opening connections to a dbus link
// without end would otherwise have as many started at once as it has
// connections under way: hundreds of processes (memory a device does not
// have) and threads (beyond Go's 10 000, a fatal error). A helper lives
// a few milliseconds: a handful at a time serves hundreds of
// connections a second.
var helpers = make(chan struct{}, 4)

// runHelper starts the helper, closes our copy of its end of the pair
// (theirs) and waits for it to exit, killed if ctx ends first. A test
// replaces it to see how many run at once.
var runHelper = func(ctx context.Context, cmd *exec.Cmd, theirs *os.File) error {
	err := cmd.Start()
	theirs.Close()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	defer stop()
	return cmd.Wait()
}

// DialAs connects to the unix socket at path inside pid's root (resolved
// as OpenIn does) with the credentials uid and gid (no supplementary
// groups). It waits, until ctx ends, while the dial helpers at work are
// as many as helpers allows.
func DialAs(ctx context.Context, pid int, path string, uid, gid int) (*net.UnixConn, error) {
	select {
	case helpers <- struct{}{}:
		defer func() { <-helpers }()
	case <-ctx.Done():
		return nil, fmt.Errorf("dial as %d: waiting for a dial helper: %w", uid, ctx.Err())
	}
	target, err := openSocketIn(pid, path)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dial as %d: %w", uid, err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "dial-pair"), os.NewFile(uintptr(pair[1]), "dial-pair")
	defer ours.Close()
	// The binary is run through a descriptor opened here: the helper's
	// uid may not traverse the directories it lives in (a 0700 one).
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		theirs.Close()
		return nil, err
	}
	defer exe.Close()
	// A literal Cmd: exec.Command would look the path up in this process,
	// where fd 5 is something else.
	cmd := &exec.Cmd{Path: "/proc/self/fd/5", Args: []string{"pv-xconnect-dial"}, Env: []string{helperEnv + "=1"},
		ExtraFiles: []*os.File{target, theirs, exe}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Pdeathsig fires when the thread that forked dies, not the process:
	// Go ends a thread whose locked goroutine returns (pantavisor's
	// namespace work does), and one that had just forked the helper would
	// kill it. Locked from the fork to the wait, the thread is this
	// goroutine's alone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = runHelper(ctx, cmd, theirs)
	if err != nil {
		return nil, fmt.Errorf("connect to %s in pid %d as uid %d: %w: %s", path, pid, uid, err, bytes.TrimSpace(out.Bytes()))
	}
	// The helper has exited: its socket, if it sent one, is queued.
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(ours.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
	if err != nil {
		return nil, fmt.Errorf("connect to %s as uid %d: no socket back: %w", path, uid, err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("connect as uid " + strconv.Itoa(uid) + ": no socket back")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, errors.New("connect as uid " + strconv.Itoa(uid) + ": no socket back")
	}
	f := os.NewFile(uintptr(fds[0]), "xconnect-dial")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}
