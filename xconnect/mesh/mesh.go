// Package mesh is the data plane of every xconnect link type, behind the
// xconnect.Plane the link actors call: it makes the consumer end inside
// the consumer (a unix socket in its mount namespace, a TCP listener in its
// network namespace, a device node), builds the type's proxy from its
// plugin package, and serves it until the link closes.
package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pantavisor/pv/xconnect"
	"github.com/pantavisor/pv/xconnect/dbus"
	"github.com/pantavisor/pv/xconnect/drm"
	xhttp "github.com/pantavisor/pv/xconnect/http"
	"github.com/pantavisor/pv/xconnect/rest"
	"github.com/pantavisor/pv/xconnect/tcp"
	"github.com/pantavisor/pv/xconnect/unix"
	"github.com/pantavisor/pv/xconnect/wayland"
)

// NewProxy builds one link type's proxy.
type NewProxy func(cfg xconnect.Config) xconnect.Proxy

// Plane establishes links. Proxies maps a link type to its plugin; a type
// without one (and other than drm, which needs no proxy) cannot be
// established, and says so.
type Plane struct {
	Log     *slog.Logger
	Proxies map[string]NewProxy
}

// tcpTypes are the link types whose consumer end is a TCP listener
// (target "IP:PORT", "IP:PORT/prefix" for http); the others' is a unix
// socket.
var tcpTypes = map[string]bool{"tcp": true, "http": true}

// Establish makes l's consumer end for the ends given and starts its
// proxy.
func (p *Plane) Establish(l xconnect.Link, e xconnect.Ends, st *xconnect.Stats) (xconnect.Setup, error) {
	if l.Type == "drm" {
		inj, err := drm.Inject(l, e)
		if err != nil {
			return nil, err
		}
		return &nodeSetup{inj: inj, from: l.Provider + ":" + l.Socket}, nil
	}
	newProxy := p.Proxies[l.Type]
	if newProxy == nil {
		return nil, fmt.Errorf("link type %q has no plugin", l.Type)
	}
	be := NewBackend(l, e)
	var (
		ln  net.Listener
		inj xconnect.Injected
		err error
	)
	end := l.ConsumerEnd()
	if tcpTypes[l.Type] {
		var addr string
		if addr, _, err = xhttp.ParseTarget(end); err != nil {
			return nil, err
		}
		ln, err = xconnect.ListenTCP(e.ConsumerPid, addr, l.Type == "tcp")
	} else {
		ln, inj, err = xconnect.ListenUnix(e.ConsumerPid, end)
	}
	if err != nil {
		return nil, err
	}
	log := p.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("link", l.Key())
	px := newProxy(xconnect.Config{Link: l, Dial: be.Dial, Stats: st, Log: log, DialAs: be.dialAs, ReadProviderFile: be.readFile})
	s := &proxySetup{link: l, be: be, ln: ln, inj: inj, px: px, consumerPid: e.ConsumerPid, done: make(chan struct{})}
	go s.serve(log)
	return s, nil
}

// Backend dials a provider's export where the provider is now: a
// restarted provider has a new pid (and root) and, in a pool, maybe a new
// address. Links and ingress rules dial through one.
type Backend struct {
	link xconnect.Link
	ends atomic.Pointer[xconnect.Ends]
	// moved is closed, and replaced, whenever the ends change: a dial
	// waiting for the provider wakes up.
	mu    sync.Mutex
	moved chan struct{}
}

// NewBackend dials l's export (Socket inside the provider, or Port at its
// address) at the ends given, until Set moves it.
func NewBackend(l xconnect.Link, e xconnect.Ends) *Backend {
	b := &Backend{link: l, moved: make(chan struct{})}
	b.ends.Store(&e)
	return b
}

// Set moves the backend to the provider's current ends; dials waiting
// for the provider try again at once.
func (b *Backend) Set(e xconnect.Ends) {
	b.ends.Store(&e)
	b.mu.Lock()
	close(b.moved)
	b.moved = make(chan struct{})
	b.mu.Unlock()
}

func (b *Backend) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.moved
}

// dialPatience is how long a consumer's connection waits for its provider:
// one that is (re)starting, or has not made its socket yet. Consumers and
// providers start together (a link exists as soon as the consumer runs),
// and a connection that waits a moment beats one that fails.
var dialPatience = 5 * time.Second

// Dial connects to the provider, waiting up to dialPatience for it to run
// and to answer.
func (b *Backend) Dial(ctx context.Context) (net.Conn, error) { return b.patiently(ctx, b.dialOnce) }

// dialAs connects to the provider's socket with uid's credentials (dbus),
// as patiently as dial.
func (b *Backend) dialAs(ctx context.Context, uid, gid int) (net.Conn, error) {
	return b.patiently(ctx, func(ctx context.Context) (net.Conn, error) {
		e := b.ends.Load()
		if e.ProviderPid <= 0 {
			return nil, fmt.Errorf("%s: %w", b.link.Provider, errRestarting)
		}
		return xconnect.DialAs(ctx, e.ProviderPid, b.link.Socket, uid, gid)
	})
}

// maxProviderFile bounds a file read inside a provider (a dbus link's
// /etc/passwd).
const maxProviderFile = 1 << 20

// readFile reads a file inside the provider as it is now.
func (b *Backend) readFile(path string) ([]byte, error) {
	e := b.ends.Load()
	if e.ProviderPid <= 0 {
		return nil, fmt.Errorf("%s: %w", b.link.Provider, errRestarting)
	}
	return xconnect.ReadFileIn(e.ProviderPid, path, maxProviderFile)
}

// patiently calls dial until it succeeds, fails for good or dialPatience
// is over, trying again when the provider moves.
func (b *Backend) patiently(ctx context.Context, dial xconnect.Dialer) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialPatience)
	defer cancel()
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		moved := b.wait()
		c, err := dial(ctx)
		if err == nil || !retryable(err) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waited %v)", err, dialPatience)
		case <-moved:
		case <-time.After(delay):
		}
	}
}

// errRestarting: the provider is not running now.
var errRestarting = errors.New("provider is not running")

// retryable says a dial may succeed if tried again: the provider is not
// running yet, its socket is not there yet, or nobody listens on it yet.
func retryable(err error) bool {
	return errors.Is(err, errRestarting) || errors.Is(err, os.ErrNotExist) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

func (b *Backend) dialOnce(ctx context.Context) (net.Conn, error) {
	e := b.ends.Load()
	if e.ProviderPid <= 0 {
		// Never pid 0: that would resolve the socket on the host.
		return nil, fmt.Errorf("%s: %w", b.link.Provider, errRestarting)
	}
	if b.link.Socket != "" {
		return xconnect.DialUnixIn(ctx, e.ProviderPid, b.link.Socket)
	}
	if b.link.Port > 0 {
		addr := e.ProviderAddr
		if !addr.IsValid() {
			// A provider in the host's network namespace answers there.
			addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		return xconnect.TCPDialer(netip.AddrPortFrom(addr, uint16(b.link.Port)).String())(ctx)
	}
	return nil, fmt.Errorf("service %q of %s exports neither a socket nor a port", b.link.Name, b.link.Provider)
}

func (b *Backend) describe() string {
	e := b.ends.Load()
	if b.link.Socket != "" {
		return b.link.Provider + "[" + strconv.Itoa(e.ProviderPid) + "]:" + b.link.Socket
	}
	return b.link.Provider + "[" + strconv.Itoa(e.ProviderPid) + "]:" + e.ProviderAddr.String() + ":" + strconv.Itoa(b.link.Port)
}

// proxySetup is an established link with a proxy.
type proxySetup struct {
	link        xconnect.Link
	be          *Backend
	ln          net.Listener
	inj         xconnect.Injected
	px          xconnect.Proxy
	consumerPid int
	done        chan struct{}
	closeOnce   sync.Once
	closeErr    error
}

func (s *proxySetup) serve(log *slog.Logger) {
	defer close(s.done)
	defer func() {
		if p := recover(); p != nil {
			log.Error("link proxy panicked", "panic", fmt.Sprint(p))
		}
	}()
	if err := s.px.Serve(s.ln); err != nil {
		log.Error("link proxy stopped", "err", err)
	}
}

func (s *proxySetup) Provider(e xconnect.Ends) { s.be.Set(e) }

func (s *proxySetup) Close() error {
	s.closeOnce.Do(func() {
		err := s.px.Close()
		if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = errors.Join(err, cerr)
		}
		<-s.done
		s.closeErr = errors.Join(err, s.inj.Remove())
	})
	return s.closeErr
}

func (s *proxySetup) Describe() string {
	return fmt.Sprintf("%s %s in %s[%d] -> %s", s.link.Type, s.link.ConsumerEnd(), s.link.Consumer, s.consumerPid, s.be.describe())
}

// nodeSetup is an injected device node (drm): nothing to proxy, nothing
// to re-point when the provider restarts (the device number stays).
type nodeSetup struct {
	inj  xconnect.Injected
	from string
}

func (s *nodeSetup) Provider(xconnect.Ends) {}
func (s *nodeSetup) Close() error           { return s.inj.Remove() }
func (s *nodeSetup) Describe() string {
	if s.inj.Theirs {
		return fmt.Sprintf("drm %s in pid %d (the consumer's own node) <- %s", s.inj.Path, s.inj.Pid, s.from)
	}
	return fmt.Sprintf("drm %s in pid %d <- %s", s.inj.Path, s.inj.Pid, s.from)
}

// Plugins is every link type's plugin.
func Plugins() map[string]NewProxy {
	return map[string]NewProxy{
		"unix":    unix.New,
		"wayland": wayland.New,
		"rest":    rest.New,
		"dbus":    dbus.New,
		"tcp":     tcp.New,
		"http":    xhttp.New,
	}
}
