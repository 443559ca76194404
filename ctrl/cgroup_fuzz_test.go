package ctrl

import (
	"strings"
	"testing"
)

// FuzzContainerOfCgroups checks that the container named by a cgroup file
// is one path segment that follows the parent in one of its lines, and
// that a name is found whenever a well-formed line puts one there.
func FuzzContainerOfCgroups(f *testing.F) {
	for _, s := range []string{
		"0::/pantavisor/web\n",
		"0::/pantavisor/web/pantavisor/db\n",
		"4:memory:/pantavisor/a\n0::/pantavisor/b\n",
		"1:name=systemd:/x:y/pantavisor/c\n",
		"0::/\n", "garbage", "0::/pantavisor/\n", "0::/pantavisor//x\n",
	} {
		f.Add([]byte(s), "pantavisor")
	}
	f.Add([]byte("0::/a/b/app\n"), "a/b")
	f.Fuzz(func(t *testing.T, content []byte, parent string) {
		segs := cgroupSegments(parent)
		if len(segs) == 0 {
			return
		}
		name, err := containerOfCgroups(content, segs)
		if err != nil {
			if !strings.Contains(err.Error(), "disagree") && !strings.Contains(err.Error(), "read cgroup file") {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if name == "" {
			return
		}
		if strings.Contains(name, "/") || strings.ContainsAny(name, "\n") {
			t.Fatalf("container %q is not one segment", name)
		}
		if !strings.Contains(string(content), strings.Join(segs, "/")+"/"+name) {
			t.Fatalf("container %q does not follow %q in %q", name, segs, content)
		}
		// The same file with the name's line appended again agrees. (A
		// name ending in "\r" on the last, unterminated line keeps its
		// "\r", which the scanner drops before a newline: no cgroup file
		// the kernel writes has either.)
		if strings.HasSuffix(name, "\r") {
			return
		}
		again, err := containerOfCgroups(append([]byte("0::/"+strings.Join(segs, "/")+"/"+name+"\n"), content...), segs)
		if err != nil || again != name {
			t.Fatalf("a line naming %q added: got %q, %v", name, again, err)
		}
	})
}
