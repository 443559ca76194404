package ingress

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/network/nat"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/xconnect"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A tcp listener relays to a port on loopback (a provider in the device's
// namespace); an http one routes to a unix-socket backend and a port by
// prefix; Backend moves the provider; a bad listener type is refused.
func TestListen(t *testing.T) {
	// Backends: HTTP on a port and on a unix socket.
	portLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(portLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "port "+r.URL.Path) }))
	defer portLn.Close()
	_, p, _ := net.SplitHostPort(portLn.Addr().String())
	port, _ := strconv.Atoi(p)
	sock := filepath.Join(t.TempDir(), "api.sock")
	unixLn, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(unixLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "unix "+r.URL.Path) }))
	defer unixLn.Close()

	plane := &Plane{}
	self := xconnect.Ends{ProviderPid: os.Getpid()}
	httpAddr := freeAddr(t)
	s, err := plane.Listen(actors.IngressListener{Type: "http", Addr: httpAddr, Rules: []actors.IngressRule{
		{IngressRule: state.IngressRule{Type: "http", Prefix: "/", Provider: "web"}, Port: port},
		{IngressRule: state.IngressRule{Type: "http", Prefix: "/api", Provider: "api"}, Socket: sock},
	}}, []*xconnect.Stats{{}, {}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Backend(0, self)
	s.Backend(1, self)
	c := http.Client{Timeout: 5 * time.Second}
	for path, want := range map[string]string{"/x": "port /x", "/api/y": "unix /y"} {
		resp, err := c.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("%s: %q, want %q", path, b, want)
		}
	}
	if d := s.Describe(); !strings.Contains(d, "http "+httpAddr) {
		t.Errorf("describe %q", d)
	}

	tcpAddr := freeAddr(t)
	ts, err := plane.Listen(actors.IngressListener{Type: "tcp", Addr: tcpAddr, Rules: []actors.IngressRule{
		{IngressRule: state.IngressRule{Type: "tcp", Provider: "web"}, Port: port}}}, []*xconnect.Stats{{}})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	ts.Backend(0, self)
	resp, err := c.Get("http://" + tcpAddr + "/t")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "port /t" {
		t.Errorf("through tcp: %q", b)
	}

	if _, err := plane.Listen(actors.IngressListener{Type: "udp", Addr: freeAddr(t)}, nil); err == nil {
		t.Error("a udp listener was opened")
	}
	if _, err := plane.Listen(actors.IngressListener{Type: "tcp", Addr: httpAddr, Rules: []actors.IngressRule{{}}}, []*xconnect.Stats{{}}); err == nil {
		t.Error("an address in use was bound twice")
	}
}

// fakeKernel records the forwards installed and removed.
type fakeKernel struct {
	mu     sync.Mutex
	events []string
	fail   error
	// removeFails is how many removals fail before one succeeds.
	removeFails int
	counts      map[string]uint64 // by forward, what Connections says
	asked       int               // calls of Connections
	// addPanics is how many installs panic before one works.
	addPanics int
}

func (k *fakeKernel) Connections(f nat.Forward) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.asked++
	n, ok := k.counts[f.String()]
	if !ok {
		return 0, fmt.Errorf("forward %s: no rule", f)
	}
	return n, nil
}

func (k *fakeKernel) setCount(f string, n uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.counts == nil {
		k.counts = map[string]uint64{}
	}
	k.counts[f] = n
}

func (k *fakeKernel) countsMade() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.asked
}

// TestKernelPathCountsWhenAsked: the forward's counter (an iptables run
// on a device) is read only when its count is asked for, and then at most
// once per CountEvery. Before, a ticker read it every CountEvery while
// the forward was installed, whether anyone looked or not.
func TestKernelPathCountsWhenAsked(t *testing.T) {
	rule := actors.IngressRule{IngressRule: state.IngressRule{Type: "tcp", Provider: "web"}, Port: 8080, Bridge: "pvbr0"}
	listen := func(t *testing.T, k *fakeKernel, every time.Duration) actors.IngressSetup {
		addr := freeAddr(t)
		s, err := (&Plane{Kernel: k, CountEvery: every}).Listen(actors.IngressListener{Type: "tcp", Addr: addr,
			Rules: []actors.IngressRule{rule}}, []*xconnect.Stats{{}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		k.setCount(addr+" → 10.0.5.13:8080", 3)
		s.Backend(0, xconnect.Ends{ProviderPid: 42, ProviderAddr: netip.MustParseAddr("10.0.5.13")})
		waitKernel(t, s, k, "dnat to 10.0.5.13:8080", "add "+addr+" → 10.0.5.13:8080 local ")
		return s
	}

	k := &fakeKernel{}
	s := listen(t, k, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	if n := k.countsMade(); n != 0 {
		t.Fatalf("%d counts in 200 ms that nobody asked for", n)
	}
	waitConnections(t, s, 3)

	k = &fakeKernel{}
	s = listen(t, k, time.Hour)
	waitConnections(t, s, 3) // the first look counts
	for range 20 {
		s.KernelConnections()
		time.Sleep(5 * time.Millisecond)
	}
	if n := k.countsMade(); n != 1 {
		t.Errorf("%d counts within CountEvery, want 1", n)
	}
}

// waitConnections waits until s says n kernel connections.
func waitConnections(t *testing.T, s actors.IngressSetup, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.KernelConnections() != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("kernel connections %d, want %d", s.KernelConnections(), n)
		}
	}
}

func (k *fakeKernel) Add(f nat.Forward) (func() error, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.addPanics > 0 {
		k.addPanics--
		k.events = append(k.events, "panic "+f.String())
		panic("iptables output not understood")
	}
	if k.fail != nil {
		k.events = append(k.events, "fail "+f.String())
		return nil, k.fail
	}
	k.events = append(k.events, "add "+f.String()+" local "+strings.Join(f.Local, ","))
	return func() error {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.removeFails > 0 {
			k.removeFails--
			k.events = append(k.events, "remove failed "+f.String())
			return errors.New("iptables: resource temporarily unavailable")
		}
		k.events = append(k.events, "remove "+f.String())
		return nil
	}, nil
}

func (k *fakeKernel) Events() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.events...)
}

// waitKernel waits until s's kernel state is want and k's events are
// events.
func waitKernel(t *testing.T, s actors.IngressSetup, k *fakeKernel, want string, events ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Kernel() != want || !slices.Equal(k.Events(), events) {
		if time.Now().After(deadline) {
			t.Fatalf("kernel %q events %q, want %q %q", s.Kernel(), k.Events(), want, events)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The kernel path of a tcp rule follows its provider: installed to its
// pool address while it runs, removed while it restarts, moved to a new
// lease; a failure to install leaves the relay serving, and says so;
// closing removes it. Rules it cannot serve say why.
func TestKernelPath(t *testing.T) {
	k := &fakeKernel{}
	plane := &Plane{Kernel: k, CountEvery: 10 * time.Millisecond}
	addr := freeAddr(t)
	rule := actors.IngressRule{IngressRule: state.IngressRule{Type: "tcp", Provider: "web"}, Port: 8080, Bridge: "pvbr0"}
	s, err := plane.Listen(actors.IngressListener{Type: "tcp", Addr: addr, Rules: []actors.IngressRule{rule},
		Local: []string{"pvbr0", "pvbr1"}}, []*xconnect.Stats{{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Kernel(); got != "relay only: provider not running" {
		t.Errorf("before any backend: %q", got)
	}
	lease := func(ip string) xconnect.Ends {
		return xconnect.Ends{ProviderPid: 42, ProviderAddr: netip.MustParseAddr(ip)}
	}
	fw := func(ip string) string { return addr + " → " + ip + ":8080" }
	s.Backend(0, lease("10.0.5.13"))
	waitKernel(t, s, k, "dnat to 10.0.5.13:8080", "add "+fw("10.0.5.13")+" local pvbr0,pvbr1")
	if d := s.Describe(); !strings.Contains(d, "kernel path: dnat to 10.0.5.13:8080") {
		t.Errorf("describe %q", d)
	}
	// Its connections are counted from the rule; those of a forward
	// removed are kept.
	k.setCount(fw("10.0.5.13"), 5)
	waitConnections(t, s, 5)
	k.setCount(fw("10.0.5.13"), 7)   // counted once more as it goes
	s.Backend(0, lease("10.0.5.13")) // the same: nothing to do
	s.Backend(0, xconnect.Ends{ProviderRestarting: true})
	waitKernel(t, s, k, "relay only: provider not running", "add "+fw("10.0.5.13")+" local pvbr0,pvbr1", "remove "+fw("10.0.5.13"))
	waitConnections(t, s, 7)
	k.setCount(fw("10.0.5.20"), 2)
	s.Backend(0, lease("10.0.5.20"))
	waitKernel(t, s, k, "dnat to 10.0.5.20:8080", "add "+fw("10.0.5.13")+" local pvbr0,pvbr1", "remove "+fw("10.0.5.13"),
		"add "+fw("10.0.5.20")+" local pvbr0,pvbr1")
	waitConnections(t, s, 9)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if ev := k.Events(); ev[len(ev)-1] != "remove "+fw("10.0.5.20") {
		t.Errorf("close left the forward: %q", ev)
	}

	// Installing fails: the relay serves outside clients too.
	back, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	go func() {
		for {
			c, err := back.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("backend\n"))
			c.Close()
		}
	}()
	bport := back.Addr().(*net.TCPAddr).Port
	k = &fakeKernel{fail: fmt.Errorf("iptables: %w", nat.ErrNoForwarding)}
	addr = freeAddr(t)
	rule.Port = bport
	fs, err := (&Plane{Kernel: k}).Listen(actors.IngressListener{Type: "tcp", Addr: addr, Rules: []actors.IngressRule{rule}}, []*xconnect.Stats{{}})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	fs.Backend(0, xconnect.Ends{ProviderPid: os.Getpid(), ProviderAddr: netip.MustParseAddr("127.0.0.1")})
	waitKernel(t, fs, k, "relay only: iptables: ip_forward is off", "fail "+addr+" → 127.0.0.1:"+strconv.Itoa(bport))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); err != nil || string(b) != "backend\n" {
		t.Errorf("through the relay: %q %v", b, err)
	}

	// Rules with no kernel path say why; http has none to speak of.
	for _, tc := range []struct {
		l    actors.IngressListener
		want string
	}{
		{actors.IngressListener{Type: "tcp", Rules: []actors.IngressRule{{Port: 80}}}, "relay only: the provider is not on a bridge pool"},
		{actors.IngressListener{Type: "tcp", Rules: []actors.IngressRule{{Socket: "/run/s", Bridge: "pvbr0"}}}, "relay only: the backend is not a port"},
		{actors.IngressListener{Type: "http", Rules: []actors.IngressRule{{Port: 80, Bridge: "pvbr0"}}}, ""},
	} {
		tc.l.Addr = freeAddr(t)
		s, err := (&Plane{Kernel: k}).Listen(tc.l, []*xconnect.Stats{{}})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Kernel(); got != tc.want {
			t.Errorf("%s %+v: kernel %q, want %q", tc.l.Type, tc.l.Rules[0], got, tc.want)
		}
		s.Close()
	}
}

// A forward whose removal fails is removed again until it is gone, and no
// new one is installed meanwhile (its DNAT would stay ahead of the new
// one, sending outside clients to the old address): the relay serves
// them. Before, the failed removal was forgotten and the new forward
// installed behind the stale one.
func TestKernelPathRetriesAFailedRemoval(t *testing.T) {
	defer func(d time.Duration) { removeRetry = d }(removeRetry)
	removeRetry = 20 * time.Millisecond
	k := &fakeKernel{}
	addr := freeAddr(t)
	rule := actors.IngressRule{IngressRule: state.IngressRule{Type: "tcp", Provider: "web"}, Port: 8080, Bridge: "pvbr0"}
	s, err := (&Plane{Kernel: k}).Listen(actors.IngressListener{Type: "tcp", Addr: addr, Rules: []actors.IngressRule{rule}}, []*xconnect.Stats{{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fw := func(ip string) string { return addr + " → " + ip + ":8080" }
	s.Backend(0, xconnect.Ends{ProviderPid: 42, ProviderAddr: netip.MustParseAddr("10.0.5.13")})
	waitKernel(t, s, k, "dnat to 10.0.5.13:8080", "add "+fw("10.0.5.13")+" local ")
	k.mu.Lock()
	k.removeFails = 2
	k.mu.Unlock()
	s.Backend(0, xconnect.Ends{ProviderPid: 43, ProviderAddr: netip.MustParseAddr("10.0.5.20")})
	waitKernel(t, s, k, "dnat to 10.0.5.20:8080", "add "+fw("10.0.5.13")+" local ",
		"remove failed "+fw("10.0.5.13"), "remove failed "+fw("10.0.5.13"), "remove "+fw("10.0.5.13"),
		"add "+fw("10.0.5.20")+" local ")
}

// TestKernelPathPanicIsAFailure: a kernel call that panics (the iptables
// library on output it does not expect) is a failure of that install,
// the relay serving meanwhile, and the next change of the provider
// installs the path. The kernel path's goroutine runs outside the actor
// system: unrecovered, the panic ended the supervisor.
func TestKernelPathPanicIsAFailure(t *testing.T) {
	k := &fakeKernel{addPanics: 1}
	addr := freeAddr(t)
	rule := actors.IngressRule{IngressRule: state.IngressRule{Type: "tcp", Provider: "web"}, Port: 8080, Bridge: "pvbr0"}
	s, err := (&Plane{Kernel: k}).Listen(actors.IngressListener{Type: "tcp", Addr: addr, Rules: []actors.IngressRule{rule}}, []*xconnect.Stats{{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fw := func(ip string) string { return addr + " → " + ip + ":8080" }
	s.Backend(0, xconnect.Ends{ProviderPid: 42, ProviderAddr: netip.MustParseAddr("10.0.5.13")})
	waitKernel(t, s, k, "relay only: panic: iptables output not understood", "panic "+fw("10.0.5.13"))
	s.Backend(0, xconnect.Ends{ProviderPid: 43, ProviderAddr: netip.MustParseAddr("10.0.5.20")})
	waitKernel(t, s, k, "dnat to 10.0.5.20:8080", "panic "+fw("10.0.5.13"), "add "+fw("10.0.5.20")+" local ")
}
