package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/ctrl"
	"github.com/pantavisor/pv/messages"
)

// identityContainers is how many running containers, each a real process
// in its own pid and mount namespaces, the identity figure compares with.
const identityContainers = 10

// identityConns is how many connections one run identifies per side.
const identityConns = 2000

func init() {
	Register(Figure{
		Name: fmt.Sprintf("pv-ctrl caller identity per connection, %d running containers (pidfd, pid+mnt namespaces, cgroup, alive check)",
			identityContainers),
		Baseline: "cgroup-only lookup (SO_PEERCRED pid, /proc/<pid>/cgroup), as before",
		Unit:     "µs",
		Needs:    []string{"root"},
		Run:      identityLookup,
	})
}

// identityBaseline is the lookup before namespaces: SO_PEERCRED's pid and
// its cgroup file, nothing pinning the pid between the two.
func identityBaseline(c net.Conn, resolve ctrl.Resolver) (string, error) {
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return "", err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return "", err
	}
	if credErr != nil {
		return "", credErr
	}
	return resolve(int(cred.Pid))
}

// identityLookup times the identification of connections from this
// process (the host) with both lookups; connect and accept are outside
// the clock, which only covers what the server does per connection.
func identityLookup() (ours, base float64, err error) {
	var cs []messages.ContainerInfo
	for i := 0; i < identityContainers; i++ {
		cmd := exec.Command("sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
		if err := cmd.Start(); err != nil {
			return 0, 0, fmt.Errorf("start container stand-in: %w", err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		cs = append(cs, messages.ContainerInfo{Name: fmt.Sprintf("c%d", i), Pid: cmd.Process.Pid})
	}
	after, err := ctrl.IdentityResolver(ctrl.DefaultCgroupParent, func() ([]messages.ContainerInfo, error) { return cs, nil })
	if err != nil {
		return 0, 0, err
	}
	before := ctrl.CgroupResolver(ctrl.DefaultCgroupParent)

	dir, err := os.MkdirTemp("", "pvbench-identity")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		return 0, 0, err
	}
	defer l.Close()

	side := func(lookup func(net.Conn) error) (float64, error) {
		var total time.Duration
		for i := 0; i < identityConns; i++ {
			c, err := net.Dial("unix", l.Addr().String())
			if err != nil {
				return 0, err
			}
			s, err := l.Accept()
			if err != nil {
				c.Close()
				return 0, err
			}
			t0 := time.Now()
			err = lookup(s)
			total += time.Since(t0)
			s.Close()
			c.Close()
			if err != nil {
				return 0, err
			}
		}
		return total.Seconds() * 1e6 / identityConns, nil
	}
	check := func(name string, err error) error {
		if err != nil {
			return err
		}
		if name != "" {
			return fmt.Errorf("this process identified as container %q, not the host", name)
		}
		return nil
	}
	base, err = side(func(c net.Conn) error { return check(identityBaseline(c, before)) })
	if err != nil {
		return 0, 0, fmt.Errorf("cgroup-only lookup: %w", err)
	}
	ours, err = side(func(c net.Conn) error {
		_, name, err := ctrl.Identify(c, after)
		return check(name, err)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("namespace lookup: %w", err)
	}
	return ours, base, nil
}
