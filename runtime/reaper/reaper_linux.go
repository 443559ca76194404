package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// ChildEnv marks the supervisor process started by Run. Run adds
// ChildEnv=1 to the child's environment; the package removes it from the
// child's environment when it is initialised, so the supervisor's own
// children do not inherit it.
const ChildEnv = "PV_REAPER_CHILD"

// isChild is read once, before main, and the marker removed.
var isChild = os.Getenv(ChildEnv) == "1"

func init() {
	if isChild {
		os.Unsetenv(ChildEnv)
	}
}

// IsChild reports whether this process is the supervisor started by Run.
func IsChild() bool { return isChild }

// ForwardedSignals are the signals Run passes on to the supervisor:
// termination requests (busybox-style init uses SIGTERM to reboot, SIGUSR1
// to halt and SIGUSR2 to power off; SIGPWR comes from UPS daemons), plus
// SIGHUP, SIGQUIT, SIGWINCH and SIGALRM.
var ForwardedSignals = []os.Signal{
	unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT,
	unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR, unix.SIGWINCH, unix.SIGALRM,
}

// Options describe the supervisor to start.
type Options struct {
	// Path is the program; "" means /proc/self/exe (this binary, even if
	// it was replaced on disk since, or runs from a sealed memfd).
	Path string
	// Args is the full argv, argv[0] included; nil means os.Args.
	Args []string
	// Env is the environment; nil means os.Environ(). ChildEnv=1 is added.
	Env []string
	// Signals are forwarded to the child; nil means ForwardedSignals.
	Signals []os.Signal
	// Logf, if set, receives diagnostics (a failed forward, a recovered
	// panic). Run never writes to stdout or stderr itself.
	Logf func(format string, args ...any)
}

// Run starts the supervisor, forwards signals to it and reaps every
// process that exits, until the supervisor itself exits. It returns the
// supervisor's exit code (128+n if it was killed by signal n) after reaping
// the zombies that remain; orphans still running are left alone. It
// returns an error only if the supervisor could not be started.
//
// Run is meant for PID 1 (or a child subreaper) and must be the only
// code in the process that waits for children: any other wait, including
// os/exec's, may lose its child to Run's wait4(-1).
func Run(o Options) (int, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	path, args, env, sigs := o.Path, o.Args, o.Env, o.Signals
	if path == "" {
		path = "/proc/self/exe"
	}
	if args == nil {
		args = os.Args
	}
	if env == nil {
		env = os.Environ()
	}
	env = append(env[:len(env):len(env)], ChildEnv+"=1")
	if sigs == nil {
		sigs = ForwardedSignals
	}

	// Subscribe before the fork so no SIGCHLD or early signal is missed.
	// SIGCHLD has its own channel: a burst of forwarded signals filling
	// theirs must not drop the notification that the child is gone.
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	defer signal.Stop(chld)
	fwd := make(chan os.Signal, 32)
	signal.Notify(fwd, sigs...)
	defer signal.Stop(fwd)

	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		return 0, fmt.Errorf("start supervisor: %w", err)
	}

	r := &reaper{child: pid, logf: logf}
	for !r.childDone {
		r.step(chld, fwd)
	}
	r.reapAll() // zombies that exited together with the child
	ws := r.childStatus
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

type reaper struct {
	child       int
	childDone   bool
	childStatus syscall.WaitStatus
	logf        func(string, ...any)
}

// step reaps what has exited, then waits for the next signal and forwards
// it. A panic is logged and swallowed: PID 1 must keep reaping.
func (r *reaper) step(chld, fwd <-chan os.Signal) {
	defer func() {
		if p := recover(); p != nil {
			r.logf("reaper: recovered panic: %v", p)
		}
	}()
	r.reapAll()
	if r.childDone {
		return
	}
	select {
	case <-chld:
	case s := <-fwd:
		if err := syscall.Kill(r.child, s.(syscall.Signal)); err != nil && !errors.Is(err, syscall.ESRCH) {
			r.logf("reaper: forward %v to %d: %v", s, r.child, err)
		}
	}
}

// reapAll collects every exited child without blocking, recording the
// supervisor's status when it is among them.
func (r *reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children at all; 0: none exited yet
		}
		if pid == r.child {
			r.childDone, r.childStatus = true, ws
		}
	}
}
