package ctrl

import (
	"errors"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/pantavisor/pv/messages"
)

func TestDecideIdentity(t *testing.T) {
	host := nsPair{pid: nsID{1, 10}, mnt: nsID{1, 11}}
	a := nsPair{pid: nsID{1, 20}, mnt: nsID{1, 21}}
	b := nsPair{pid: nsID{1, 30}, mnt: nsID{1, 31}}
	// keepsPid shares the host pid namespace, so only its mount namespace
	// says who it is.
	keepsPid := nsPair{pid: host.pid, mnt: nsID{1, 41}}
	inits := []initNS{{"a", a}, {"b", b}, {"kp", keepsPid}}
	cgErr := errors.New("cgroup unreadable")
	tests := []struct {
		name    string
		peer    nsPair
		cg      string
		cgErr   error
		want    string
		wantErr string
	}{
		{name: "host", peer: host, want: ""},
		{name: "container", peer: a, cg: "a", want: "a"},
		{name: "container that left its cgroup", peer: a, cg: "", want: "a"},
		{name: "container in another's cgroup", peer: a, cg: "b", want: "a"},
		{name: "container with unreadable cgroup", peer: a, cgErr: cgErr, want: "a"},
		{name: "unshared mount ns inside a", peer: nsPair{pid: a.pid, mnt: nsID{1, 99}}, want: "a"},
		{name: "shares host pid ns, own mnt", peer: keepsPid, want: "kp"},
		{name: "pid of a, mnt of b", peer: nsPair{pid: a.pid, mnt: b.mnt}, wantErr: "both"},
		{name: "host ns, container cgroup", peer: host, cg: "a", wantErr: "cgroup of container"},
		{name: "host ns, unreadable cgroup", peer: host, cgErr: cgErr, wantErr: "cgroup unreadable"},
		{name: "namespaces of nobody", peer: nsPair{pid: nsID{1, 77}, mnt: nsID{1, 78}}, wantErr: "no running container"},
		{name: "host pid ns, unknown mnt", peer: nsPair{pid: host.pid, mnt: nsID{1, 78}}, wantErr: "no running container"},
		{name: "not read", peer: nsPair{}, wantErr: "not read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decideIdentity(tc.peer, host, inits, tc.cg, tc.cgErr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestIdentityResolverRealNamespaces runs a real process in new pid and
// mount namespaces, lists it as container "box", and checks that it
// resolves to box while it sits in no cgroup of ours, that this test
// process is the host, and that a process in namespaces of no container
// is denied.
func TestIdentityResolverRealNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create namespaces")
	}
	box := exec.Command("sleep", "60")
	box.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	if err := box.Start(); err != nil {
		t.Fatalf("start namespaced process: %v", err)
	}
	t.Cleanup(func() { box.Process.Kill(); box.Wait() })
	stray := exec.Command("sleep", "60")
	stray.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	if err := stray.Start(); err != nil {
		t.Fatalf("start stray process: %v", err)
	}
	t.Cleanup(func() { stray.Process.Kill(); stray.Wait() })

	boxPid := box.Process.Pid
	list := func() ([]messages.ContainerInfo, error) {
		return []messages.ContainerInfo{{Name: "box", Pid: boxPid}, {Name: "gone", Pid: 0}}, nil
	}
	r, err := IdentityResolver(DefaultCgroupParent, list)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r(box.Process.Pid); err != nil || got != "box" {
		t.Errorf("namespaced process: got %q, %v; want box", got, err)
	}
	if got, err := r(os.Getpid()); err != nil || got != "" {
		t.Errorf("this process: got %q, %v; want the host", got, err)
	}
	if got, err := r(stray.Process.Pid); err == nil {
		t.Errorf("process in a mount namespace of no container: got %q, want an error", got)
	}

	// The container restarts: its old init's cached namespaces go, the
	// new init's are read.
	box.Process.Kill()
	box.Wait()
	box2 := exec.Command("sleep", "60")
	box2.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	if err := box2.Start(); err != nil {
		t.Fatalf("restart namespaced process: %v", err)
	}
	t.Cleanup(func() { box2.Process.Kill(); box2.Wait() })
	boxPid = box2.Process.Pid
	if got, err := r(box2.Process.Pid); err != nil || got != "box" {
		t.Errorf("restarted container: got %q, %v; want box", got, err)
	}
}

// TestPeerAliveAfterExit checks the pid reuse guard on a real pidfd: a
// peer that connected and exited is not alive, whatever /proc said.
func TestPeerAliveAfterExit(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A child connects, then exits; the server accepts only afterwards.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperConnect$")
	cmd.Env = append(os.Environ(), "PV_CTRL_HELPER_CONNECT="+sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client: %v: %s", err, out)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pid, pidfd, err := peerProcess(c)
	if err != nil {
		t.Fatalf("peerProcess: %v", err)
	}
	defer closePidfd(pidfd)
	if pid != cmd.Process.Pid {
		t.Errorf("peer pid %d, want %d", pid, cmd.Process.Pid)
	}
	if err := peerAlive(pidfd); err == nil {
		t.Errorf("peer that exited is alive")
	}

	// And a live peer (this process) is alive.
	c2, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s2, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	_, fd2, err := peerProcess(s2)
	if err != nil {
		t.Fatal(err)
	}
	defer closePidfd(fd2)
	if err := peerAlive(fd2); err != nil {
		t.Errorf("live peer: %v", err)
	}
}

// TestHelperConnect is the client of TestPeerAliveAfterExit when run as a
// child: it connects and exits, leaving the connection to the server.
func TestHelperConnect(t *testing.T) {
	sock := os.Getenv("PV_CTRL_HELPER_CONNECT")
	if sock == "" {
		t.Skip("helper process only")
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	// Exit with the connection open: the kernel keeps the server's end.
	_ = c
	os.Exit(0)
}

// TestInitCacheDropsExitedInits: an init that ends while the list still
// names its pid (the backend has not seen the exit yet) loses its cached
// namespaces at the next connection, one poll of all the pidfds telling
// the ended from the living; the living keep theirs.
func TestInitCacheDropsExitedInits(t *testing.T) {
	start := func() *exec.Cmd {
		c := exec.Command("sleep", "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	live, dying := start(), start()
	cs := []messages.ContainerInfo{{Name: "live", Pid: live.Process.Pid}, {Name: "dying", Pid: dying.Process.Pid}}
	cache := &initCache{byPid: map[int]cachedInit{}}
	names := func(in []initNS) (out []string) {
		for _, i := range in {
			out = append(out, i.name)
		}
		return out
	}
	if got := names(cache.inits("/proc", cs)); !slices.Equal(got, []string{"live", "dying"}) {
		t.Fatalf("inits %v, want live and dying", got)
	}
	if cache.dropExited(); len(cache.byPid) != 2 {
		t.Fatalf("%d inits cached after dropExited while both run, want 2", len(cache.byPid))
	}
	dying.Process.Kill()
	dying.Wait()
	cache.dropExited()
	if _, ok := cache.byPid[dying.Process.Pid]; ok || len(cache.byPid) != 1 {
		t.Fatalf("cached %v after dying's exit, want only %d", slices.Collect(maps.Keys(cache.byPid)), live.Process.Pid)
	}
	if got := names(cache.inits("/proc", cs)); !slices.Equal(got, []string{"live"}) {
		t.Errorf("inits %v after dying's exit, want live only", got)
	}
}
