package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pantavisor/pv/xconnect"
	pvhttp "github.com/pantavisor/pv/xconnect/http"
	"github.com/pantavisor/pv/xconnect/tcp"
)

// The relay figures measure the tcp relay and the http reverse proxy (of
// tcp/http links and ingress rules) against the same client talking to the
// same backend directly, in the same run. Everything is on loopback: under
// `make bench` as root that is the loopback of the bench's own network
// namespace.

const (
	relayBulk     = 2 << 30 // bytes uploaded per throughput run
	httpRequests  = 20000   // requests per rate run
	httpClients   = 8       // concurrent keep-alive clients
	httpReplySize = 256     // bytes of each response body
)

func init() {
	var bulkRuns, rateRuns int
	Register(Figure{
		Name: "tcp relay: upload throughput (2 GiB, one connection)", Baseline: "direct to the backend",
		Unit: "MB/s", Goal: 0.8, Higher: true,
		Run: func() (float64, float64, error) { return relayFigure(&bulkRuns, tcpRig, upload) },
	})
	Register(Figure{
		Name:     fmt.Sprintf("http proxy: requests/s (%d keep-alive clients, %d B replies)", httpClients, httpReplySize),
		Baseline: "direct to the backend", Unit: "req/s", Goal: 0.5, Higher: true,
		Run: func() (float64, float64, error) { return relayFigure(&rateRuns, httpRig, requestRate) },
	})
}

// loopbackUp brings lo up when it is down, as it is in the fresh network
// namespace `make bench` runs in; on a host where it is up nothing changes.
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// listenLoopback is a TCP listener on a free loopback port.
func listenLoopback() (net.Listener, error) {
	if err := loopbackUp(); err != nil {
		return nil, err
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// rig is a backend and a proxy in front of it: the addresses to reach each
// and what stops both.
type rig struct {
	proxy, direct string
	stop          func()
}

// relayFigure measures f, a fixed amount of work that returns its rate,
// through the proxy and directly, twice each (abbaRates; runs counts the
// runs).
func relayFigure(runs *int, mk func() (rig, error), f func(addr string) (float64, error)) (ours, base float64, err error) {
	r, err := mk()
	if err != nil {
		return 0, 0, err
	}
	defer r.stop()
	return abbaRates(runs, func() (float64, error) { return f(r.proxy) }, func() (float64, error) { return f(r.direct) })
}

// tcpRig is a sink backend (it reads to the end of stream, then answers
// the byte count as 8 bytes) and a tcp relay in front of it.
func tcpRig() (rig, error) {
	bl, err := listenLoopback()
	if err != nil {
		return rig{}, err
	}
	serveEach(bl, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "%08x", n)
	})
	pl, err := listenLoopback()
	if err != nil {
		bl.Close()
		return rig{}, err
	}
	p := tcp.New(xconnect.Config{Stats: &xconnect.Stats{}, Dial: xconnect.TCPDialer(bl.Addr().String()), Log: quietLog()})
	go p.Serve(pl)
	return rig{proxy: pl.Addr().String(), direct: bl.Addr().String(), stop: func() { p.Close(); bl.Close() }}, nil
}

// upload sends relayBulk bytes, half-closes, and checks the sink's count;
// the rate is in MB/s.
func upload(addr string) (float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	for sent := 0; sent < relayBulk; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	ack := make([]byte, 8)
	if _, err := io.ReadFull(c, ack); err != nil {
		return 0, fmt.Errorf("sink's count: %w", err)
	}
	el := time.Since(start)
	if want := fmt.Sprintf("%08x", relayBulk); string(ack) != want {
		return 0, fmt.Errorf("sink got %s bytes (hex), want %s", ack, want)
	}
	return float64(relayBulk) / 1e6 / el.Seconds(), nil
}

// httpRig is an HTTP backend answering every request with httpReplySize
// bytes and an http proxy routing "/" to it.
func httpRig() (rig, error) {
	reply := make([]byte, httpReplySize)
	backend := &nethttp.Server{Handler: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(reply)
	})}
	bl, err := listenLoopback()
	if err != nil {
		return rig{}, err
	}
	go backend.Serve(bl)
	pl, err := listenLoopback()
	if err != nil {
		backend.Close()
		return rig{}, err
	}
	s := pvhttp.NewServer(pvhttp.Options{Log: quietLog()})
	s.Set([]pvhttp.Route{{Prefix: "/", Dial: xconnect.TCPDialer(bl.Addr().String())}})
	go s.Serve(pl)
	return rig{proxy: pl.Addr().String(), direct: bl.Addr().String(), stop: func() { s.Close(); backend.Close() }}, nil
}

// requestRate sends httpRequests GETs from httpClients keep-alive clients
// and returns requests per second.
func requestRate(addr string) (float64, error) {
	tr := &nethttp.Transport{MaxIdleConnsPerHost: httpClients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &nethttp.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + addr + "/x"
	var left atomic.Int64
	left.Store(httpRequests)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	for range httpClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				if err := get(cl, url); err != nil {
					mu.Lock()
					first = errors.Join(first, err)
					mu.Unlock()
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return httpRequests / time.Since(start).Seconds(), nil
}

func get(cl *nethttp.Client, url string) error {
	resp, err := cl.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != nethttp.StatusOK || n != httpReplySize {
		return fmt.Errorf("GET %s: %s, %d bytes", url, resp.Status, n)
	}
	return nil
}
