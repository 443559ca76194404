package ctrl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestContainerOfCgroups(t *testing.T) {
	cases := []struct {
		name, content string
		parent        []string
		want          string
		wantErr       bool
	}{
		{"v2 container", "0::/pantavisor/web\n", []string{"pantavisor"}, "web", false},
		{"v2 below our own cgroup", "0::/system.slice/pv.service/pantavisor/web\n", []string{"pantavisor"}, "web", false},
		{"v2 sub-cgroup of a container", "0::/pantavisor/web/worker\n", []string{"pantavisor"}, "web", false},
		{"v2 forged nested parent", "0::/pantavisor/web/pantavisor/mgmt\n", []string{"pantavisor"}, "web", false},
		{"v2 root is host", "0::/\n", []string{"pantavisor"}, "", false},
		{"v2 outside our namespace is host", "0::/..\n", []string{"pantavisor"}, "", false},
		{"v2 parent itself is host", "0::/pantavisor\n", []string{"pantavisor"}, "", false},
		{"v2 other cgroup is host", "0::/user.slice/session-1.scope\n", []string{"pantavisor"}, "", false},
		{"prefix of a segment is not the parent", "0::/pantavisor2/web\n", []string{"pantavisor"}, "", false},
		{"v1 lines agree", "12:pids:/pantavisor/web\n11:memory:/pantavisor/web\n1:name=systemd:/\n", []string{"pantavisor"}, "web", false},
		{"v1 upstream lxc", "1:name=pantavisor:/lxc/app\n", []string{"lxc"}, "app", false},
		{"v1 lines disagree", "12:pids:/pantavisor/web\n11:memory:/pantavisor/db\n", []string{"pantavisor"}, "", true},
		{"colon in path", "0::/pantavisor/we:b\n", []string{"pantavisor"}, "we:b", false},
		{"multi-segment parent", "0::/pv/containers/web\n", []string{"pv", "containers"}, "web", false},
		{"multi-segment parent partial", "0::/pv/web\n", []string{"pv", "containers"}, "", false},
		{"no newline at end", "0::/pantavisor/web", []string{"pantavisor"}, "web", false},
		{"empty", "", []string{"pantavisor"}, "", false},
		{"garbage lines skipped", "garbage\n0::/pantavisor/web\n", []string{"pantavisor"}, "web", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := containerOfCgroups([]byte(c.content), c.parent)
			if (err != nil) != c.wantErr || got != c.want {
				t.Errorf("got %q, %v; want %q, error %v", got, err, c.want, c.wantErr)
			}
		})
	}
}

func TestCgroupResolverProc(t *testing.T) {
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "42", "cgroup"), []byte("0::/pantavisor/web\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := cgroupResolver(proc, "/pantavisor/")
	if got, err := r(42); got != "web" || err != nil {
		t.Errorf("pid 42 = %q, %v", got, err)
	}
	if got, err := r(0); got != "" || err != nil {
		t.Errorf("pid 0 = %q, %v; want host", got, err)
	}
	if _, err := r(43); err == nil {
		t.Error("a vanished pid resolved")
	}
	if _, err := r(-1); err == nil {
		t.Error("a negative pid resolved")
	}
	if _, err := cgroupResolver(proc, "")(42); err == nil {
		t.Error("an empty parent resolved")
	}
	if _, err := cgroupResolver(proc, "/")(42); err == nil {
		t.Error("parent / resolved")
	}
}

// TestCgroupResolverSelf reads the real /proc/self/cgroup: taking a segment
// of our own cgroup path as the parent must name the segment after it.
func TestCgroupResolverSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	if _, err := CgroupResolver(DefaultCgroupParent)(os.Getpid()); err != nil {
		t.Fatalf("resolve self: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		// v1 "N:controllers:/path" or v2 "0::/path".
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		segs := strings.Split(strings.TrimPrefix(parts[2], "/"), "/")
		if len(segs) < 2 || segs[0] == "" || segs[1] == "" {
			continue
		}
		got, err := CgroupResolver(segs[0])(os.Getpid())
		if err != nil || got != segs[1] {
			t.Errorf("parent %q (from %q): got %q, %v; want %q", segs[0], line, got, err, segs[1])
		}
		return
	}
	t.Skip("this process's cgroup paths are too shallow for the check")
}
