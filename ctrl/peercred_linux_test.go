package ctrl

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Only a kernel without SO_PEERPIDFD falls back to pidfd_open of the
// SO_PEERCRED pid. A kernel that has it answers EINVAL (or ESRCH) for a
// peer already reaped; the fallback would then pin whatever process
// reuses that pid and trust it as the peer. Before, EINVAL fell back.
func TestOnlyAMissingPeerPidfdFallsBack(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{unix.ENOPROTOOPT, true},
		{fmt.Errorf("getsockopt: %w", unix.ENOPROTOOPT), true},
		{unix.EINVAL, false},
		{unix.ESRCH, false},
		{unix.EBADF, false},
	} {
		if got := pidfdUnsupported(tc.err); got != tc.want {
			t.Errorf("%v: fallback %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A process in a pid namespace nested in a container's counts as that
// container's source: the namespace below ours it is in, not its own.
func TestNestedPidNamespacesAreOneSource(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (unshare --pid)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare")
	}
	self, err := pidNSOf("self")
	if err != nil {
		t.Fatal(err)
	}
	// outer: pid 1 of namespace A (a child of ours); inner: in B, a
	// child of A.
	cmd := exec.Command("unshare", "--pid", "--fork", "--", "sh", "-c",
		"unshare --pid --fork sleep 30 & exec sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	children := func(pid int) []string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		return strings.Fields(string(b))
	}
	var outer, inner string
	for deadline := time.Now().Add(5 * time.Second); inner == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c := children(cmd.Process.Pid); len(c) == 1 {
			outer = c[0]
			n, _ := strconv.Atoi(outer)
			for _, u := range children(n) { // the inner unshare
				m, _ := strconv.Atoi(u)
				if cc := children(m); len(cc) == 1 {
					inner = cc[0]
				}
			}
		}
	}
	if inner == "" {
		t.Fatal("the nested processes did not start")
	}
	a, err := pidNSOf(outer)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pidNSOf(inner)
	if err != nil || b == a || a == self {
		t.Fatalf("namespaces: self %d, outer %d, inner %d (%v)", self, a, b, err)
	}
	for _, p := range []string{outer, inner} {
		if got, err := topPidNS(p, self); err != nil || got != a {
			t.Errorf("source of pid %s: %d (%v), want the container's namespace %d", p, got, err, a)
		}
	}
	if got, err := topPidNS("self", self); err != nil || got != self {
		t.Errorf("source of ourselves: %d (%v), want ours %d", got, err, self)
	}
}
