// Package ingress opens the device's ingress listeners (device.json
// ingress[]): the actors.IngressPlane of a device. A tcp listener relays
// each connection to its rule's backend (xconnect/tcp); an http listener
// routes requests by longest path prefix among its rules
// (xconnect/http). A backend is the provider's export: its unix socket
// inside the provider, or its port at the provider's IPAM address (or on
// the device's loopback for a provider in the host's network namespace),
// followed as the provider restarts (mesh.Backend).
//
// A tcp rule whose backend is a port at a bridge pool address also has a
// kernel path when the plane has a Kernel: connections from outside the
// device are rewritten to the backend by DNAT (nat.Forwards) and never
// cross pantavisor, as Docker does without its userland proxy. The
// listener stays bound beside it for the device's own clients and the
// containers' (their connections do not cross PREROUTING, or are left to
// it), and for every client whenever the kernel path is not installed: the
// provider is restarting (the relay waits for it), or installing the rules
// failed (logged, and shown as the listener's "kernel" in GET /actors).
package ingress

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/network/nat"
	"github.com/pantavisor/pv/xconnect"
	xhttp "github.com/pantavisor/pv/xconnect/http"
	"github.com/pantavisor/pv/xconnect/mesh"
	"github.com/pantavisor/pv/xconnect/tcp"
)

// Plane opens listeners in pantavisor's own network namespace (the
// device's).
type Plane struct {
	Log *slog.Logger
	// TCP and HTTP tune the proxies; zero values take their defaults.
	TCP  tcp.Options
	HTTP xhttp.Options
	// Kernel, when set, installs the kernel path of the tcp rules it can
	// serve (a *nat.Forwards on a device).
	Kernel Kernel
	// CountEvery is how often at most a kernel path counts its
	// connections, when asked (default countEvery).
	CountEvery time.Duration
}

// Kernel installs one forward in pantavisor's network namespace and
// returns what removes it; Connections counts the connections an
// installed forward has rewritten.
type Kernel interface {
	Add(f nat.Forward) (remove func() error, err error)
	Connections(f nat.Forward) (uint64, error)
}

// countEvery is how often at most a kernel path reads its forward's
// count: an iptables run each time. It reads it only when its count is
// asked for (GET /actors, /metrics) and older than this, so that a device
// nobody watches runs no iptables for it.
const countEvery = 10 * time.Second

// Listen binds l.Addr and serves its rules.
func (p *Plane) Listen(l actors.IngressListener, stats []*xconnect.Stats) (actors.IngressSetup, error) {
	log := p.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("ingress", l.Addr)
	bes := make([]*mesh.Backend, len(l.Rules))
	for i, r := range l.Rules {
		bes[i] = mesh.NewBackend(xconnect.Link{Consumer: "EXTERNAL", Provider: r.Provider, Name: r.Service, Type: r.Type,
			Socket: r.Socket, Port: r.Port}, xconnect.Ends{})
	}
	ln, err := xconnect.ListenTCP(0, l.Addr, l.Type == "tcp")
	if err != nil {
		return nil, err
	}
	s := &setup{l: l, ln: ln, bes: bes, done: make(chan struct{})}
	switch l.Type {
	case "tcp":
		if len(l.Rules) != 1 {
			ln.Close()
			return nil, fmt.Errorf("tcp listener %s has %d rules, want one", l.Addr, len(l.Rules))
		}
		s.px = tcp.NewWith(xconnect.Config{Dial: bes[0].Dial, Stats: stats[0], Log: log}, p.TCP)
		if p.Kernel != nil {
			every := p.CountEvery
			if every <= 0 {
				every = countEvery
			}
			s.kp, s.kernel = newKernelPath(p.Kernel, log, l, every)
		}
	case "http":
		opt := p.HTTP
		opt.Log = log
		srv := xhttp.NewServer(opt)
		routes := make([]xhttp.Route, len(l.Rules))
		for i, r := range l.Rules {
			routes[i] = xhttp.Route{Prefix: r.Prefix, Dial: bes[i].Dial, Stats: stats[i]}
		}
		srv.Set(routes)
		s.px = srv
	default:
		ln.Close()
		return nil, fmt.Errorf("listener %s: unknown ingress type %q", l.Addr, l.Type)
	}
	if s.kp != nil {
		go s.kp.run()
	}
	go func() {
		defer close(s.done)
		defer func() {
			if r := recover(); r != nil {
				log.Error("ingress listener panicked", "panic", fmt.Sprint(r))
			}
		}()
		if err := s.px.Serve(ln); err != nil {
			log.Error("ingress listener stopped", "err", err)
		}
	}()
	return s, nil
}

type setup struct {
	l    actors.IngressListener
	ln   net.Listener
	bes  []*mesh.Backend
	px   xconnect.Proxy
	done chan struct{}
	// kp is the tcp rule's kernel path, nil when it has none; kernel
	// then says why ("" when the plane has no Kernel or for http).
	kp     *kernelPath
	kernel string
}

func (s *setup) Backend(i int, e xconnect.Ends) {
	if i >= 0 && i < len(s.bes) {
		s.bes[i].Set(e)
		if s.kp != nil {
			s.kp.set(e)
		}
	}
}

// Close removes the kernel path first: from then on the listener takes
// the new connections from outside too, until it closes.
func (s *setup) Close() error {
	var err error
	if s.kp != nil {
		err = s.kp.close()
	}
	err = errors.Join(err, s.px.Close())
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = errors.Join(err, cerr)
	}
	<-s.done
	return err
}

func (s *setup) Describe() string {
	routes := make([]string, len(s.l.Rules))
	for i, r := range s.l.Rules {
		to := r.Socket
		if to == "" {
			to = fmt.Sprintf(":%d", r.Port)
		}
		routes[i] = r.Prefix + "→" + r.Provider + to
	}
	d := s.l.Type + " " + s.ln.Addr().String() + " " + strings.Join(routes, ", ")
	if k := s.Kernel(); k != "" {
		d += " (kernel path: " + k + ")"
	}
	return d
}

// KernelConnections is how many connections the kernel path took, which
// the relay never saw (0 without one).
func (s *setup) KernelConnections() int64 {
	if s.kp == nil {
		return 0
	}
	return int64(s.kp.connections())
}

func (s *setup) Kernel() string {
	if s.kp != nil {
		return s.kp.state()
	}
	return s.kernel
}

// kernelPath keeps one tcp rule's forward pointed at its provider: one
// goroutine installs and removes it, the latest ends winning, so that the
// actor that pushes the ends never waits for iptables.
type kernelPath struct {
	k    Kernel
	log  *slog.Logger
	base nat.Forward // Listen and Local; To from the ends
	port uint16      // the export's

	mu      sync.Mutex
	want    netip.AddrPort // where the provider answers now; invalid when it does not run
	status  string
	err     error         // of the last removal
	counted uint64        // connections of the forwards removed so far
	live    uint64        // of the installed one, at its last count
	every   time.Duration // at least between counts
	lastAt  time.Time     // of the last count

	wake     chan struct{}
	count    chan struct{} // asks run for a count; holds one at most
	quit     chan struct{}
	quitOnce sync.Once
	done     chan struct{}
}

// newKernelPath returns the kernel path of l's single rule, or nil and
// why the rule has none.
func newKernelPath(k Kernel, log *slog.Logger, l actors.IngressListener, every time.Duration) (*kernelPath, string) {
	r := l.Rules[0]
	listen, err := netip.ParseAddrPort(l.Addr)
	switch {
	case r.Socket != "" || r.Port <= 0 || r.Port > 65535:
		return nil, "relay only: the backend is not a port"
	case r.Bridge == "":
		return nil, "relay only: the provider is not on a bridge pool"
	case err != nil || !listen.Addr().Is4():
		return nil, "relay only: not an IPv4 listen address"
	}
	return &kernelPath{k: k, log: log, base: nat.Forward{Listen: listen, Local: l.Local}, port: uint16(r.Port),
		status: "relay only: provider not running", every: every,
		wake: make(chan struct{}, 1), count: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}, ""
}

// set points the forward at the provider's ends: its pool address while
// it runs, none while it does not (the relay holds new connections until
// it is back, where a forward would have them refused).
func (kp *kernelPath) set(e xconnect.Ends) {
	var to netip.AddrPort
	if e.ProviderPid > 0 && e.ProviderAddr.Is4() {
		to = netip.AddrPortFrom(e.ProviderAddr, kp.port)
	}
	kp.mu.Lock()
	kp.want = to
	kp.mu.Unlock()
	select {
	case kp.wake <- struct{}{}:
	default:
	}
}

func (kp *kernelPath) state() string {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	return kp.status
}

func (kp *kernelPath) setState(s string) {
	kp.mu.Lock()
	kp.status = s
	kp.mu.Unlock()
}

// connections is how many connections the kernel path took: the
// forwards removed, and the installed one at its last count. A count
// older than every is made again, in the background: the caller (an
// actor describing itself) does not wait for iptables, and gets the new
// count on its next look.
func (kp *kernelPath) connections() uint64 {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if time.Since(kp.lastAt) >= kp.every {
		select {
		case kp.count <- struct{}{}:
		default: // asked already
		}
	}
	return kp.counted + kp.live
}

func (kp *kernelPath) run() {
	defer close(kp.done)
	var (
		cur    netip.AddrPort
		remove func() error
	)
	count := func() {
		f := kp.base
		f.To = cur
		var n uint64
		err := xconnect.Recovered(func() (err error) { n, err = kp.k.Connections(f); return err })
		kp.mu.Lock()
		defer kp.mu.Unlock()
		kp.lastAt = time.Now()
		if err != nil {
			kp.log.Debug("kernel path not counted", "err", err)
			return
		}
		kp.live = n
	}
	// drop removes the installed forward. One whose removal failed stays
	// installed as far as this loop knows, and is removed again at the
	// next wake (retryLater makes one): forgotten, its DNAT would stay in
	// the chain ahead of any new one for the port, still sending outside
	// clients to its old address.
	drop := func() error {
		if remove == nil {
			return nil
		}
		count() // its last connections, before the rule and its counter go
		if err := xconnect.Recovered(remove); err != nil {
			return err
		}
		kp.mu.Lock()
		kp.counted, kp.live = kp.counted+kp.live, 0
		kp.mu.Unlock()
		remove, cur = nil, netip.AddrPort{}
		return nil
	}
	for {
		select {
		case <-kp.count:
			if remove != nil {
				count()
			}
			continue
		case <-kp.quit:
			err := drop()
			kp.mu.Lock()
			kp.err = err
			kp.mu.Unlock()
			return
		case <-kp.wake:
		}
		kp.mu.Lock()
		want := kp.want
		kp.mu.Unlock()
		if remove != nil && want == cur {
			continue
		}
		if err := drop(); err != nil {
			kp.log.Error("kernel path not removed; the relay serves every client until it is", "err", err)
			kp.setState("relay only: the previous kernel path is not removed yet: " + err.Error())
			kp.retryLater()
			continue
		}
		if !want.IsValid() {
			kp.setState("relay only: provider not running")
			continue
		}
		f := kp.base
		f.To = want
		// This goroutine is outside the actor system: a panic in a
		// kernel call (iptables) is that install's failure, never the
		// supervisor's end (Recovered, as for removal and counting).
		var rm func() error
		err := xconnect.Recovered(func() (err error) { rm, err = kp.k.Add(f); return err })
		if err != nil {
			kp.setState("relay only: " + err.Error())
			kp.log.Warn("kernel path not installed; the relay serves every client", "to", want, "err", err)
			continue
		}
		remove, cur = rm, want
		kp.setState("dnat to " + want.String())
		kp.log.Info("kernel path installed", "to", want)
	}
}

// removeRetry is how long a kernel path waits before it tries again to
// remove a forward whose removal failed.
var removeRetry = time.Second

// retryLater wakes the loop after removeRetry.
func (kp *kernelPath) retryLater() {
	time.AfterFunc(removeRetry, func() {
		select {
		case kp.wake <- struct{}{}:
		default: // a wake is pending already
		}
	})
}

// close removes the forward and stops the goroutine; again, it says
// how the first went.
func (kp *kernelPath) close() error {
	kp.quitOnce.Do(func() { close(kp.quit) })
	<-kp.done
	kp.mu.Lock()
	defer kp.mu.Unlock()
	kp.status = "closed"
	return kp.err
}
