package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/pantavisor/pv/xconnect"
	"github.com/pantavisor/pv/xconnect/dbus"
	"github.com/pantavisor/pv/xconnect/mesh"
	"github.com/pantavisor/pv/xconnect/unix"
)

// The xconnect figures measure a link's data plane — the proxy a link
// runs — against a direct connection to the same provider socket, in
// the same run. Namespace entry only happens when a link is made, not per
// connection or byte, so the sockets here are on the host.

const (
	linkBulk  = 256 << 20 // bytes per throughput run
	linkPings = 5000      // round trips per latency run
	idleLinks = 1000
)

func init() {
	var bulkRuns int
	Register(Figure{
		Name: "unix link: bulk throughput (256 MiB, one connection)", Baseline: "direct to the provider's socket",
		Unit: "MB/s", Goal: 0.8, Higher: true,
		Run: func() (float64, float64, error) { return linkFigure(&bulkRuns, bulk) },
	})
	Register(Figure{
		Name: "unix link: round trip p50 (64 B request/response, one CPU)", Baseline: "direct to the provider's socket",
		Unit: "µs", Goal: 1.5,
		Run: linkPing,
	})
	Register(Figure{
		Name: fmt.Sprintf("memory per idle link (%d unix links: socket, proxy, goroutines)", idleLinks), Baseline: "none",
		Unit: "KiB", Limit: 64,
		Run: idleLinkMemory,
	})
	Register(Figure{
		Name: "D-Bus method calls/s through a dbus link (uid of the role, one connection)", Baseline: "direct to the same dbus-daemon",
		Unit: "calls/s", Goal: 0.85, Higher: true, Needs: []string{"root", "exec:dbus-daemon"},
		Run: dbusRate,
	})
}

// provider serves path: it answers every byte block it reads with the
// same block (an echo), until the client's end of stream.
func provider(path string) (func(), error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	serveEach(ln, func(c net.Conn) { io.Copy(c, c) })
	return func() { ln.Close() }, nil
}

// linkRig is a provider socket and a unix link in front of it.
type linkRig struct {
	dir, prov, link string
	stop            []func()
}

// newLinkRig starts a provider with serve (provider, or one in a process
// of its own) and a link in front of it.
func newLinkRig(serve func(path string) (func(), error)) (*linkRig, error) {
	dir, err := os.MkdirTemp("", "pvbench-link")
	if err != nil {
		return nil, err
	}
	r := &linkRig{dir: dir, prov: filepath.Join(dir, "prov.sock"), link: filepath.Join(dir, "link.sock")}
	stop, err := serve(r.prov)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r.stop = append(r.stop, stop)
	p := unix.New(xconnect.Config{Stats: &xconnect.Stats{}, Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", r.prov)
	}})
	ln, err := net.Listen("unix", r.link)
	if err != nil {
		r.close()
		return nil, err
	}
	go p.Serve(ln)
	r.stop = append(r.stop, func() { p.Close() })
	return r, nil
}

func (r *linkRig) close() {
	for _, f := range slices.Backward(r.stop) {
		f()
	}
	os.RemoveAll(r.dir)
}

// linkFigure measures f through the link and directly, the side that goes
// first alternating from run to run (*runs counts them).
func linkFigure(runs *int, f func(path string) (float64, error)) (ours, base float64, err error) {
	r, err := newLinkRig(provider)
	if err != nil {
		return 0, 0, err
	}
	defer r.close()
	*runs++
	first, second := &ours, &base
	paths := [2]string{r.link, r.prov}
	if *runs%2 == 0 {
		first, second = &base, &ours
		paths[0], paths[1] = r.prov, r.link
	}
	if *first, err = f(paths[0]); err != nil {
		return 0, 0, err
	}
	*second, err = f(paths[1])
	return ours, base, err
}

// bulk writes linkBulk bytes and reads them back (the provider echoes),
// concurrently, on one connection; MB/s of payload.
func bulk(path string) (float64, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for sent := 0; sent < linkBulk; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- c.(*net.UnixConn).CloseWrite()
	}()
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		return 0, err
	}
	if err := <-errc; err != nil {
		return 0, err
	}
	if n != linkBulk {
		return 0, fmt.Errorf("read back %d bytes of %d", n, linkBulk)
	}
	return float64(linkBulk) / 1e6 / time.Since(start).Seconds(), nil
}

// pingP50s is the median round trip of a 64-byte message through each
// of paths, in µs. The paths are measured interleaved: each round sends
// one message through every connection, the first one alternating. The
// pace of this machine changes by several times from one second to the
// next (on a VM, whether a wake-up has to rouse a halted vCPU), and a
// change then weighs on every path alike, not on whichever one was being
// measured while it lasted.
func pingP50s(paths ...string) ([]float64, error) {
	conns := make([]net.Conn, 0, len(paths))
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, path := range paths {
		c, err := net.Dial("unix", path)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
	}
	msg, got := make([]byte, 64), make([]byte, 64)
	rtt := make([][]float64, len(conns))
	for i := range rtt {
		rtt[i] = make([]float64, 0, linkPings)
	}
	for round := 0; round < linkPings+100; round++ {
		for k := range conns {
			j := (k + round) % len(conns)
			t := time.Now()
			if _, err := conns[j].Write(msg); err != nil {
				return nil, fmt.Errorf("%s: %w", paths[j], err)
			}
			if _, err := io.ReadFull(conns[j], got); err != nil {
				return nil, fmt.Errorf("%s: %w", paths[j], err)
			}
			if round >= 100 { // warm
				rtt[j] = append(rtt[j], float64(time.Since(t).Nanoseconds())/1e3)
			}
		}
	}
	p50 := make([]float64, len(rtt))
	for i, v := range rtt {
		p50[i] = median(v)
	}
	return p50, nil
}

// linkPing measures the round trip through the link and directly,
// interleaved, with this process (client, link and provider) on one CPU
// and one P. Spread over two vCPUs, a round trip measured mostly whether
// Go's idle threads had to wake a halted vCPU: the direct path, with
// fewer goroutines to keep a thread awake, was now 11 µs and now 65, and
// the ratio went from 0.5× to 5× between runs. On one CPU every hop is
// a goroutine switch, and the figure is what the link's work adds.
func linkPing() (ours, base float64, err error) {
	restore, err := onOneCPU(0)
	if err != nil {
		return 0, 0, err
	}
	defer restore()
	r, err := newLinkRig(provider)
	if err != nil {
		return 0, 0, err
	}
	defer r.close()
	p50, err := pingP50s(r.link, r.prov)
	if err != nil {
		return 0, 0, err
	}
	return p50[0], p50[1], nil
}

// idleLinkMemory makes idleLinks links through mesh (listener, proxy,
// its goroutine) and reports the growth of heap and stacks per link.
func idleLinkMemory() (float64, float64, error) {
	dir, err := os.MkdirTemp("", "pvbench-idle")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	prov := filepath.Join(dir, "prov.sock")
	stop, err := provider(prov)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	plane := &mesh.Plane{Log: quietLog(), Proxies: mesh.Plugins()}
	mem := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc + ms.StackInuse
	}
	before := mem()
	setups := make([]xconnect.Setup, 0, idleLinks)
	defer func() {
		for _, s := range setups {
			s.Close()
		}
	}()
	for i := 0; i < idleLinks; i++ {
		l := xconnect.Link{Consumer: "c", Provider: "p", Name: fmt.Sprint("s", i), Type: "unix", Socket: prov,
			Target: filepath.Join(dir, fmt.Sprint("l", i, ".sock"))}
		s, err := plane.Establish(l, xconnect.Ends{ProviderPid: os.Getpid()}, &xconnect.Stats{})
		if err != nil {
			return 0, 0, err
		}
		setups = append(setups, s)
	}
	time.Sleep(50 * time.Millisecond) // every proxy parked in Accept
	after := mem()
	return float64(after-before) / idleLinks / 1024, 0, nil
}

const dbusConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
`

type benchPinger struct{}

func (benchPinger) Ping() (string, *godbus.Error) { return "pong", nil }

// dbusRate: sequential Ping calls for a second, through a dbus link with
// role "bin" (a uid the host's passwd knows, as the daemon requires) and
// directly.
func dbusRate() (float64, float64, error) {
	dir, err := os.MkdirTemp("", "pvbench-dbus")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "bus.sock")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(dbusConf, sock)), 0o644); err != nil {
		return 0, 0, err
	}
	daemon := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile")
	if err := daemon.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { daemon.Process.Kill(); daemon.Wait() }()
	var svc *godbus.Conn
	for i := 0; i < 100; i++ {
		if svc, err = godbus.Connect("unix:path=" + sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("bus: %w", err)
	}
	defer svc.Close()
	svc.Export(benchPinger{}, "/p", "org.pantavisor.Bench")
	if _, err := svc.RequestName("org.pantavisor.Bench", godbus.NameFlagDoNotQueue); err != nil {
		return 0, 0, err
	}
	p := dbus.New(xconnect.Config{Link: xconnect.Link{Consumer: "c", Provider: "bus", Type: "dbus", Role: "bin"},
		Stats: &xconnect.Stats{}, Log: quietLog(),
		DialAs: func(ctx context.Context, uid, gid int) (net.Conn, error) {
			return xconnect.DialAs(ctx, 0, sock, uid, gid)
		},
		ReadProviderFile: func(string) ([]byte, error) { return os.ReadFile("/etc/passwd") },
	})
	link := filepath.Join(dir, "link.sock")
	ln, err := net.Listen("unix", link)
	if err != nil {
		return 0, 0, err
	}
	go p.Serve(ln)
	defer p.Close()
	rate := func(path string) (float64, error) {
		conn, err := godbus.Connect("unix:path=" + path)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		obj := conn.Object("org.pantavisor.Bench", "/p")
		var s string
		for i := 0; i < 200; i++ { // warm
			if err := obj.Call("org.pantavisor.Bench.Ping", 0).Store(&s); err != nil {
				return 0, err
			}
		}
		n, start := 0, time.Now()
		for time.Since(start) < time.Second {
			if err := obj.Call("org.pantavisor.Bench.Ping", 0).Store(&s); err != nil {
				return 0, err
			}
			n++
		}
		if s != "pong" {
			return 0, errors.New("wrong answer " + s)
		}
		return float64(n) / time.Since(start).Seconds(), nil
	}
	// Both orders in each run: the daemon warms up over the first.
	o1, err := rate(link)
	if err != nil {
		return 0, 0, fmt.Errorf("through the link: %w", err)
	}
	b1, err := rate(sock)
	if err != nil {
		return 0, 0, err
	}
	b2, err := rate(sock)
	if err != nil {
		return 0, 0, err
	}
	o2, err := rate(link)
	if err != nil {
		return 0, 0, fmt.Errorf("through the link: %w", err)
	}
	return (o1 + o2) / 2, (b1 + b2) / 2, nil
}

// quietLog drops log records: the figures time what they measure, not
// logging.
func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
