package ctrl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/pantavisor/pv/messages"
)

// Resolver maps the pid of a connecting process (as SO_PEERCRED reports
// it, in the server's pid namespace; 0 when the peer is outside it) to the
// container the process runs in. "" means pantavisor itself or a host
// tool, which are privileged: a resolver that answers "" for a container
// process hands that container full control of the device. An error makes
// the caller unknown, which is denied everything.
//
// It runs in the server's accept loop, so it must be fast and must not
// block; a panic in it is recovered and makes the caller unknown.
type Resolver func(pid int) (container string, err error)

// rolesTTL bounds how long a connection trusts the roles it looked up:
// a revision change that takes mgmt away from a container reaches its
// open keep-alive connections within this time.
var rolesTTL = time.Second // a var so tests can shorten it

// roleMgmt is the role that makes a container privileged.
const roleMgmt = "mgmt"

// errUnknownCaller is wrapped in every reason a caller is denied as unknown.
var errUnknownCaller = errors.New("unknown caller")

// caller is who sent a request, as handlers see it.
type caller struct {
	pid int
	// container is "" for the host (pantavisor, its daemons, host tools).
	container string
	// mgmt is true for the host and for containers with role mgmt.
	mgmt bool
}

func (c caller) String() string {
	if c.container == "" {
		return fmt.Sprintf("host (pid %d)", c.pid)
	}
	return fmt.Sprintf("container %s (pid %d)", c.container, c.pid)
}

// peer is the identity of one connection, shared by all its requests.
type peer struct {
	pid       int
	container string
	// err is set when the peer could not be identified; it never changes.
	err error

	// mu guards the roles cache. net/http serves one request at a time
	// per HTTP/1 connection, so it is never contended; it is here so that
	// correctness does not rest on that.
	mu      sync.Mutex
	rolesAt time.Time
	known   bool
	mgmt    bool
}

type peerKey struct{}

// connContext identifies the peer of a new connection and stores it in the
// connection's context. It runs in http.Server's accept loop, where a panic
// would end Serve, so it recovers.
func (s *Server) connContext(ctx context.Context, c net.Conn) (out context.Context) {
	p := &peer{}
	out = context.WithValue(ctx, peerKey{}, p)
	defer func() {
		if v := recover(); v != nil {
			p.err = fmt.Errorf("resolve caller: %w: panic: %v", errUnknownCaller, v)
			s.log.Error("ctrl: caller resolver panicked", "pid", p.pid, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = u.NetConn() // teConn: the credentials are the socket's
	}
	p.pid, p.container, p.err = Identify(c, s.resolve)
	return out
}

// Identify is who connected c: its pid (0 when outside our pid namespace)
// and the container resolve names for it ("" for the host). The peer is
// pinned by a pidfd while resolve reads /proc, and checked alive after, so
// a pid reused by then is not trusted. The error wraps errUnknownCaller.
func Identify(c net.Conn, resolve Resolver) (pid int, container string, err error) {
	pid, pidfd, err := peerProcess(c)
	if err != nil {
		return 0, "", fmt.Errorf("read peer credentials: %w: %w", errUnknownCaller, err)
	}
	defer closePidfd(pidfd)
	name, err := resolve(pid)
	if err != nil {
		return pid, "", fmt.Errorf("resolve caller pid %d: %w: %w", pid, errUnknownCaller, err)
	}
	// Only now that /proc/<pid> was read: if the peer is gone its pid may
	// have named another process during the reads.
	if err := peerAlive(pidfd); err != nil {
		return pid, "", fmt.Errorf("resolve caller pid %d: %w: %w", pid, errUnknownCaller, err)
	}
	return pid, name, nil
}

// callerOf returns the identified caller of a request, with its roles
// current to within rolesTTL; the error wraps errUnknownCaller when the
// caller cannot be identified.
func (s *Server) callerOf(r *http.Request) (caller, error) {
	p, _ := r.Context().Value(peerKey{}).(*peer)
	if p == nil {
		// Only possible when ServeHTTP is used outside Serve.
		return caller{}, fmt.Errorf("find caller: %w: no peer on connection", errUnknownCaller)
	}
	if p.err != nil {
		return caller{}, p.err
	}
	if p.container == "" {
		return caller{pid: p.pid, mgmt: true}, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); p.rolesAt.IsZero() || now.Sub(p.rolesAt) > rolesTTL {
		cs, err := s.b.Containers()
		if err != nil {
			// Not cached: the backend may answer on the next request.
			return caller{}, fmt.Errorf("look up roles of %s: %w: %w", p.container, errUnknownCaller, err)
		}
		p.known, p.mgmt = rolesOf(cs, p.container)
		p.rolesAt = now
	}
	if !p.known {
		return caller{}, fmt.Errorf("look up roles of %s: %w: no such container", p.container, errUnknownCaller)
	}
	return caller{pid: p.pid, container: p.container, mgmt: p.mgmt}, nil
}

// rolesOf reports whether name is one of the containers and whether it has
// role mgmt. Roles are taken as the backend reports them: upstream's default
// (mgmt when run.json has no roles) is the state's business, not ours.
func rolesOf(cs []messages.ContainerInfo, name string) (known, mgmt bool) {
	for i := range cs {
		if cs[i].Name == name {
			return true, slices.Contains(cs[i].Roles, roleMgmt)
		}
	}
	return false, false
}

// authorize is the permission decision: the status and message that deny
// c a route needing p, or 0 when c may proceed.
func authorize(p perm, c caller) (status int, msg string) {
	if p == permMgmt && !c.mgmt {
		return http.StatusForbidden, msgNotMgmt
	}
	return 0, ""
}
