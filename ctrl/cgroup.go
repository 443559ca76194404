package ctrl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CgroupResolver returns the default Resolver: it reads /proc/<pid>/cgroup
// and answers <name> when a cgroup path, in any hierarchy line (v1
// "N:controllers:/path" or v2 "0::/path"), contains the segments
// <parent>/<name>; otherwise "" (the host). parent is the cgroup parent the
// runtime puts containers under (the driver's CgroupParent(), "pantavisor"
// by default; it may have several segments).
//
// Danger: a process in no container's cgroup is the host, hence
// privileged; the runtime must place every container process in its cgroup
// before the container can reach the socket.
//
// The first <parent>/<name> in a path wins, so a container that creates
// <parent>/<other> below its own (delegated) cgroup still resolves to
// itself. Lines that disagree on the container are an error. Pid 0 (the
// peer is outside our pid namespace: the host talking to an appengine
// instance) resolves to the host. A process that is gone, or an empty
// parent, is an error: the caller is unknown and denied.
func CgroupResolver(parent string) Resolver {
	return cgroupResolver("/proc", parent)
}

func cgroupResolver(procRoot, parent string) Resolver {
	segs := cgroupSegments(parent)
	return func(pid int) (string, error) {
		if len(segs) == 0 {
			return "", errors.New("resolve cgroup: no container cgroup parent configured")
		}
		if pid == 0 {
			return "", nil
		}
		if pid < 0 {
			return "", fmt.Errorf("resolve cgroup: bad pid %d", pid)
		}
		b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
		if err != nil {
			return "", fmt.Errorf("resolve cgroup: %w", err)
		}
		name, err := containerOfCgroups(b, segs)
		if err != nil {
			return "", fmt.Errorf("resolve cgroup of pid %d: %w", pid, err)
		}
		return name, nil
	}
}

// containerOfCgroups finds the container named by the content of a
// /proc/<pid>/cgroup file: the segment after the first occurrence of the
// parent segments in each line's path. It is "" when no line names one.
func containerOfCgroups(content []byte, parent []string) (string, error) {
	found := ""
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		// The path is everything after the second colon: a v1 path may
		// itself contain colons.
		_, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		_, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		name := containerOfPath(p, parent)
		if name == "" {
			continue
		}
		if found != "" && found != name {
			return "", fmt.Errorf("cgroup lines disagree: %q and %q", found, name)
		}
		found = name
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read cgroup file: %w", err)
	}
	return found, nil
}

// containerOfPath returns the segment that follows the first occurrence of
// the parent segments in a cgroup path, or "".
func containerOfPath(p string, parent []string) string {
	segs := strings.Split(p, "/")
	for i := 0; i+len(parent) < len(segs); i++ {
		if slices.Equal(segs[i:i+len(parent)], parent) && segs[i+len(parent)] != "" {
			return segs[i+len(parent)]
		}
	}
	return ""
}
