package xconnect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// A link's consumer end lives inside the consumer: its socket in the
// consumer's mount namespace, its TCP listener in the consumer's network
// namespace. The work is done on an OS thread that enters those namespaces
// and is never given back to the Go scheduler: the thread ends with its
// goroutine, so no other goroutine ever runs in a container's namespaces.
// The file descriptors it creates are the process's and stay valid after.

// nsKind is one namespace a thread can enter.
type nsKind struct {
	file string // under /proc/<pid>/ns
	flag int
}

var (
	mntNS = nsKind{"mnt", unix.CLONE_NEWNS}
	netNS = nsKind{"net", unix.CLONE_NEWNET}
)

// inNamespaces runs fn on a fresh OS thread inside pid's namespaces of the
// given kinds. pid 0 runs fn in pantavisor's own namespaces (a consumer
// end on the host, as ingress has). With the mount namespace, pid 0
// included, the thread has filesystem attributes of its own (root, cwd,
// umask), so fn may set its umask: the files it creates then get their
// mode at creation, never by a chmod of their path afterwards, which a
// consumer could turn into a chmod of another file by renaming a symlink
// over the new one.
func inNamespaces(pid int, kinds []nsKind, fn func() error) error {
	if pid == 0 && !slices.Contains(kinds, mntNS) {
		return fn()
	}
	if pid == 0 {
		kinds = nil // nothing to enter; the thread's own attributes only
	}
	// The namespace files are opened before any setns: once in the
	// container's mount namespace, /proc is the container's.
	fds := make([]int, 0, len(kinds))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, k := range kinds {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, k.file), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s namespace of pid %d: %w", k.file, pid, err)
		}
		fds = append(fds, fd)
	}
	errc := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				errc <- fmt.Errorf("panic in namespace of pid %d: %v", pid, p)
			}
		}()
		// Never unlocked: this thread leaves pantavisor's namespaces and
		// must die with the goroutine rather than run anything else.
		runtime.LockOSThread()
		// A thread sharing its filesystem attributes (root, cwd, umask)
		// with the process's other threads may not change mount
		// namespace, and its umask would be theirs.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare filesystem attributes: %w", err)
			return
		}
		for i, k := range kinds {
			if err := unix.Setns(fds[i], k.flag); err != nil {
				errc <- fmt.Errorf("enter %s namespace of pid %d: %w", k.file, pid, err)
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}

// Injected is a consumer end made inside a container: where it is, and
// the inode it got, so that removing it never removes what someone else
// put at that path since (the consumer end of the next incarnation of the
// link, say).
type Injected struct {
	Pid  int
	Path string
	// made is the inode made there.
	made nodeStamp
	// Theirs: what is at Path was there before and is not the link's
	// (a device node the consumer has of its own); Remove leaves it.
	Theirs bool
}

// Remove removes the consumer end if it is still the one that was made. A
// consumer that is gone took its namespace, and the end, with it: that is
// not an error.
func (i Injected) Remove() error {
	if i.Path == "" || i.Theirs {
		return nil
	}
	// Removed now, or gone with the consumer's namespace.
	madeNodes.del(i.made)
	err := inNamespaces(i.Pid, []nsKind{mntNS}, func() error {
		var st unix.Stat_t
		if err := unix.Lstat(i.Path, &st); err != nil {
			return err
		}
		if stampOf(&st) != i.made {
			return nil // not ours any more
		}
		return unix.Unlink(i.Path)
	})
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove consumer end %s: %w", i.Path, err)
	}
	return nil
}

// stamp records the inode now at i.Path (inside the namespace the caller
// is in).
func (i *Injected) stamp() error {
	var st unix.Stat_t
	if err := unix.Lstat(i.Path, &st); err != nil {
		return err
	}
	i.made = stampOf(&st)
	return nil
}

// ListenUnix creates a listening unix socket at path inside pid's mount
// namespace (on the host for pid 0): missing directories are made (0755),
// a stale socket there is replaced, anything else there is an error. The
// socket is mode 0666: the consumer container is the one that may use it,
// whatever uid its processes run as. The socket file is left in place when
// the listener closes (it is in another namespace); the Injected returned
// removes it.
func ListenUnix(pid int, path string) (*net.UnixListener, Injected, error) {
	inj := Injected{Pid: pid, Path: path}
	if !filepath.IsAbs(path) {
		return nil, inj, fmt.Errorf("consumer socket %q: not an absolute path", path)
	}
	var ln *net.UnixListener
	err := inNamespaces(pid, []nsKind{mntNS}, func() error {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := removeSocket(path); err != nil {
			return err
		}
		// bind(2) gives the socket 0777 less the umask (this
		// thread's own, see inNamespaces).
		unix.Umask(0o111)
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			return err
		}
		l.SetUnlinkOnClose(false)
		if err := inj.stamp(); err != nil {
			l.Close()
			return err
		}
		ln = l
		return nil
	})
	if err != nil {
		return nil, inj, fmt.Errorf("consumer socket %s: %w", path, err)
	}
	return ln, inj, nil
}

// removeSocket removes a socket at path; nothing there is fine, anything
// other than a socket is left and reported.
func removeSocket(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&os.ModeSocket == 0:
		return fmt.Errorf("%s exists and is not a socket (%s)", path, fi.Mode().Type())
	}
	return os.Remove(path)
}

// ListenTCP listens on addr inside pid's network namespace (the host's for
// pid 0). keepAlive turns on TCP keep-alive probes (Go's default) for
// the connections it accepts: a byte relay, whose idle timeout is long,
// needs them to find a peer that vanished; an HTTP server, whose idle,
// header and send timeouts end such a connection, does not (nginx does
// not either), and each accepted connection would pay four setsockopt
// calls for them.
func ListenTCP(pid int, addr string, keepAlive bool) (*net.TCPListener, error) {
	var ln *net.TCPListener
	lc := net.ListenConfig{}
	if !keepAlive {
		lc.KeepAlive = -1
	}
	err := inNamespaces(pid, []nsKind{netNS}, func() error {
		l, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return err
		}
		ln = l.(*net.TCPListener)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("consumer listener %s: %w", addr, err)
	}
	return ln, nil
}

// Mknod creates a device node at path inside pid's mount namespace with
// the given mode (type and permissions) and device number, owned by uid
// and gid. A node already there that an earlier Mknod of this process
// made for the same device is kept, and the Injected returned owns it
// too; one it did not make (the consumer's own) is left as it is, and
// the Injected returned says so (Theirs) and its Remove leaves the node:
// the consumer has the device already, and removing the link must not
// take its node away. Anything else there is an error.
func Mknod(pid int, path string, mode uint32, rdev uint64, uid, gid int) (Injected, error) {
	inj := Injected{Pid: pid, Path: path}
	if !filepath.IsAbs(path) {
		return inj, fmt.Errorf("device node %q: not an absolute path", path)
	}
	err := inNamespaces(pid, []nsKind{mntNS}, func() error {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err == nil {
			if st.Mode&unix.S_IFMT != mode&unix.S_IFMT || st.Rdev != rdev {
				return fmt.Errorf("%s exists and is not the same device", path)
			}
			if !madeNodes.has(stampOf(&st)) {
				inj.Theirs = true
				return nil
			}
			return inj.stamp()
		}
		// The provider's permissions exactly: mknod(2) applies the
		// umask (this thread's own, see inNamespaces).
		unix.Umask(0)
		if err := unix.Mknod(path, mode, int(rdev)); err != nil {
			return err
		}
		// Owned through a descriptor of the node itself: a rename
		// over the path since cannot make that another file.
		fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != mode&unix.S_IFMT || st.Rdev != rdev {
			return fmt.Errorf("%s was replaced while being made", path)
		}
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return err
		}
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		inj.made = stampOf(&st)
		madeNodes.add(inj.made)
		return nil
	})
	if err != nil {
		return inj, fmt.Errorf("device node %s: %w", path, err)
	}
	return inj, nil
}

// A nodeStamp tells one inode from any other: its device and number, and
// its type and change time, which tell a new file from this one when the
// filesystem gave the freed inode number to it.
type nodeStamp struct {
	dev, ino uint64
	mode     uint32
	ctime    unix.Timespec
}

func stampOf(st *unix.Stat_t) nodeStamp {
	return nodeStamp{st.Dev, st.Ino, st.Mode, st.Ctim}
}

// madeNodes are the device nodes Mknod made and no Remove has removed
// yet: a node found at a target is the link's own only if it is one.
var madeNodes = nodeSet{m: map[nodeStamp]struct{}{}}

type nodeSet struct {
	mu sync.Mutex
	m  map[nodeStamp]struct{}
}

func (s *nodeSet) add(n nodeStamp) { s.mu.Lock(); s.m[n] = struct{}{}; s.mu.Unlock() }

func (s *nodeSet) del(n nodeStamp) { s.mu.Lock(); delete(s.m, n); s.mu.Unlock() }

func (s *nodeSet) has(n nodeStamp) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[n]
	return ok
}

// OpenIn opens path as the process pid sees it, resolved inside pid's root
// (RESOLVE_IN_ROOT): a symlink in the container, absolute or with "..",
// cannot lead out of it to the host's files. It returns an O_PATH file.
func OpenIn(pid int, path string) (*os.File, error) {
	if pid == 0 {
		fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
	root, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("root of pid %d: %w", pid, err)
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "open in pid " + strconv.Itoa(pid), Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ReadFileIn reads the regular file at path inside pid's root (resolved
// as OpenIn does), up to max bytes: more is an error. What is read is
// the size the file has when opened; a pseudo-file of size 0 reads empty.
func ReadFileIn(pid int, path string, max int64) ([]byte, error) {
	f, err := OpenIn(pid, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The type is checked before the open: opening a FIFO for reading
	// waits for a writer, for ever if none comes.
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s in pid %d: not a regular file", path, pid)
	}
	// O_NONBLOCK: a regular file's read never waits anyway; a
	// pseudo-file's may, and then fails rather than waits.
	r, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	fi, err := r.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s in pid %d: larger than %d bytes", path, pid, max)
	}
	// Only the size the file has: the kernel's pseudo-files (/proc/kmsg,
	// a trace_pipe) are regular files of size 0 whose read waits for
	// data, for ever when none comes, and /proc/kmsg's takes the kernel's
	// messages from whoever collects them. A file that grows meanwhile
	// is read as it was.
	data, err := io.ReadAll(io.LimitReader(r, fi.Size()))
	if err != nil {
		return nil, err
	}
	return data, nil
}

// ErrRefusedSocket: a provider's socket resolved to one pantavisor never
// connects to on anyone's behalf (RefuseSocket).
var ErrRefusedSocket = errors.New("refused: a socket of pantavisor's own")

// refused holds the device and inode numbers of the sockets RefuseSocket
// was given.
var refused struct {
	sync.Mutex
	ids map[[2]uint64]string
}

// RefuseSocket makes DialUnixIn and DialAs refuse the socket at path, by
// its inode, under whatever name a container gives it: pantavisor's
// control socket, which every container has bind-mounted. A provider
// whose exported socket is a symlink (or a link, or a bind) to it would
// otherwise have pantavisor connect there for each consumer or ingress
// client, as pantavisor: the control socket would take them for the host.
func RefuseSocket(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("refuse socket %s: %w", path, err)
	}
	refused.Lock()
	defer refused.Unlock()
	if refused.ids == nil {
		refused.ids = map[[2]uint64]string{}
	}
	refused.ids[[2]uint64{st.Dev, st.Ino}] = path
	return nil
}

// openSocketIn is OpenIn for a socket to connect to: one RefuseSocket
// named is refused.
func openSocketIn(pid int, path string) (*os.File, error) {
	f, err := OpenIn(pid, path)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	refused.Lock()
	own, ok := refused.ids[[2]uint64{st.Dev, st.Ino}]
	refused.Unlock()
	if ok {
		f.Close()
		return nil, fmt.Errorf("%s in pid %d is %s: %w", path, pid, own, ErrRefusedSocket)
	}
	return f, nil
}

// DialUnixIn connects to the unix socket at path inside pid's root, safely
// resolved (OpenIn): the connection goes through the O_PATH descriptor's
// /proc/self/fd name, so what is connected is what was resolved.
func DialUnixIn(ctx context.Context, pid int, path string) (*net.UnixConn, error) {
	f, err := openSocketIn(pid, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(int(f.Fd())))
	if err != nil {
		return nil, fmt.Errorf("connect to %s in pid %d: %w", path, pid, err)
	}
	return c.(*net.UnixConn), nil
}

// UnixDialer dials the provider's socket at path inside pid's root.
func UnixDialer(pid int, path string) Dialer {
	return func(ctx context.Context) (net.Conn, error) { return DialUnixIn(ctx, pid, path) }
}

// TCPDialer dials addr (the provider's lease address and export port).
func TCPDialer(addr string) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}
