package ctrl

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/messages"
)

// nsID names one namespace: the device and inode of its /proc/<pid>/ns
// link, as stat(2) reports them. The zero nsID is "not read".
type nsID struct{ dev, ino uint64 }

// nsPair is a process's pid and mount namespaces: what a container cannot
// leave without privileges it does not get, unlike its cgroup, which a
// container that keeps the host cgroup namespace may move out of.
type nsPair struct{ pid, mnt nsID }

// initNS is a running container's init namespaces.
type initNS struct {
	name string
	ns   nsPair
}

// ContainerLister returns the running containers with their init pids;
// the control server's Backend.Containers is one.
type ContainerLister func() ([]messages.ContainerInfo, error)

// IdentityResolver returns the Resolver pantavisor uses: a caller is
// identified by its pid and mount namespaces, compared with each running
// container's init and with the supervisor's own, and its cgroup (as
// CgroupResolver reads it) is the second signal; see decideIdentity.
//
// The ctrl server calls it once per connection, not per request; the
// containers' init namespaces are cached while their inits live.
func IdentityResolver(parent string, list ContainerLister) (Resolver, error) {
	self, err := readNS("/proc", "self")
	if err != nil {
		return nil, fmt.Errorf("identity resolver: read own namespaces: %w", err)
	}
	return identityResolver("/proc", self, parent, list), nil
}

func identityResolver(procRoot string, self nsPair, parent string, list ContainerLister) Resolver {
	byCgroup := cgroupResolver(procRoot, parent)
	cache := &initCache{byPid: map[int]cachedInit{}}
	return func(pid int) (string, error) {
		if pid == 0 {
			// Outside our pid namespace is above it: the host of an
			// appengine instance. No container is above us.
			return "", nil
		}
		if pid < 0 {
			return "", fmt.Errorf("resolve namespaces: bad pid %d", pid)
		}
		peer, err := readNS(procRoot, strconv.Itoa(pid))
		if err != nil {
			return "", fmt.Errorf("resolve namespaces of pid %d: %w", pid, err)
		}
		cs, err := list()
		if err != nil {
			return "", fmt.Errorf("resolve namespaces: list containers: %w", err)
		}
		inits := cache.inits(procRoot, cs)
		cg, cgErr := byCgroup(pid)
		return decideIdentity(peer, self, inits, cg, cgErr)
	}
}

// initCache keeps each running container init's namespaces with a pidfd
// that pins the init: reading them costs two /proc stats (about 6 µs
// each); whether the inits still live, one poll(2) of all their pidfds
// per connection, whatever their number. While the init lives its pid
// names it, so the namespaces read once stay its own.
type initCache struct {
	mu    sync.Mutex
	byPid map[int]cachedInit
	// polls and pids are dropExited's, kept for reuse.
	polls []unix.PollFd
	pids  []int
}

type cachedInit struct {
	pidfd int
	ns    nsPair
}

// inits returns the namespaces of the inits of cs, from the cache where
// the init is still alive; inits that exited, and containers not running,
// have none.
func (c *initCache) inits(procRoot string, cs []messages.ContainerInfo) []initNS {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropExited()
	seen := make(map[int]bool, len(cs))
	out := make([]initNS, 0, len(cs))
	for i := range cs {
		pid := cs[i].Pid
		if pid <= 0 {
			continue
		}
		seen[pid] = true
		e, ok := c.byPid[pid]
		if !ok {
			fd, err := openPidfd(pid)
			if err != nil {
				continue // exited since the list was made
			}
			ns, err := readNS(procRoot, strconv.Itoa(pid))
			// Read after the pidfd: alive now means the read was of it.
			if err != nil || peerAlive(fd) != nil {
				closePidfd(fd)
				continue
			}
			e = cachedInit{pidfd: fd, ns: ns}
			c.byPid[pid] = e
		}
		out = append(out, initNS{name: cs[i].Name, ns: e.ns})
	}
	for pid, e := range c.byPid {
		if !seen[pid] {
			closePidfd(e.pidfd)
			delete(c.byPid, pid)
		}
	}
	return out
}

// dropExited forgets the cached inits that have ended, asking the kernel
// about all of them in one poll(2): a pidfd reads as ready once its
// process has exited. One pidfd_send_signal(0) per init, as before, made
// a device of 100 containers pay 100 system calls per connection to
// pv-ctrl. Should poll fail, each init is asked on its own.
func (c *initCache) dropExited() {
	c.polls, c.pids = c.polls[:0], c.pids[:0]
	for pid, e := range c.byPid {
		c.polls = append(c.polls, unix.PollFd{Fd: int32(e.pidfd), Events: unix.POLLIN})
		c.pids = append(c.pids, pid)
	}
	_, err := unix.Poll(c.polls, 0)
	for err == unix.EINTR {
		_, err = unix.Poll(c.polls, 0)
	}
	for i, pid := range c.pids {
		pidfd := int(c.polls[i].Fd)
		// POLLIN once exited; POLLNVAL or POLLERR: not usable either.
		if (err == nil && c.polls[i].Revents != 0) || (err != nil && peerAlive(pidfd) != nil) {
			closePidfd(pidfd)
			delete(c.byPid, pid)
		}
	}
}

// decideIdentity is who a peer is, from its namespaces, the supervisor's
// own (self), each running container's init namespaces, and the container
// its cgroup names (cg, "" for none):
//   - a peer in a container's pid or mount namespace (one that is not also
//     the supervisor's) is that container, whatever its cgroup says;
//   - namespaces of two containers at once are an error;
//   - a peer in the supervisor's own pid and mount namespaces is the host,
//     unless its cgroup names a container: that disagreement is an error;
//   - anything else (namespaces that are no container's and not the
//     supervisor's, an unreadable cgroup) is an error.
//
// An error makes the caller unknown, which is denied everything.
func decideIdentity(peer, self nsPair, inits []initNS, cg string, cgErr error) (string, error) {
	if peer.pid == (nsID{}) || peer.mnt == (nsID{}) || self.pid == (nsID{}) || self.mnt == (nsID{}) {
		return "", errors.New("resolve namespaces: namespaces not read")
	}
	found := ""
	for _, c := range inits {
		in := (c.ns.pid != self.pid && c.ns.pid == peer.pid) ||
			(c.ns.mnt != self.mnt && c.ns.mnt == peer.mnt)
		if !in {
			continue
		}
		if found != "" && found != c.name {
			return "", fmt.Errorf("resolve namespaces: peer is in namespaces of both %q and %q", found, c.name)
		}
		found = c.name
	}
	if found != "" {
		return found, nil
	}
	if peer != self {
		return "", errors.New("resolve namespaces: peer is in namespaces of no running container and not the supervisor's")
	}
	if cgErr != nil {
		return "", cgErr
	}
	if cg != "" {
		return "", fmt.Errorf("resolve namespaces: peer is in the supervisor's namespaces but in the cgroup of container %q", cg)
	}
	return "", nil
}

// readNS stats /proc/<pid>/ns/{pid,mnt}.
func readNS(procRoot, pid string) (nsPair, error) {
	var p nsPair
	var err error
	if p.pid, err = statNS(filepath.Join(procRoot, pid, "ns", "pid")); err != nil {
		return nsPair{}, err
	}
	if p.mnt, err = statNS(filepath.Join(procRoot, pid, "ns", "mnt")); err != nil {
		return nsPair{}, err
	}
	return p, nil
}

func statNS(p string) (nsID, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nsID{}, fmt.Errorf("read namespace: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nsID{}, fmt.Errorf("read namespace %s: no inode", p)
	}
	return nsID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// cgroupSegments splits a cgroup parent into its path segments.
func cgroupSegments(parent string) []string {
	if p := strings.Trim(path.Clean("/"+parent), "/"); p != "" {
		return strings.Split(p, "/")
	}
	return nil
}
