package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/ingress"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/xconnect"
	"github.com/pantavisor/pv/xconnect/tcp"
)

// The ingress TCP figures: bulk throughput from a client through a relay
// to a sink on loopback, all in the bench's own network namespace, for
// pantavisor's tcp ingress, HAProxy with splicing on both sides, socat,
// a bare Go relay and the client straight to the sink; the same sink,
// the same client, the same run.

const ingressBulk = 1 << 30 // bytes per throughput run

func init() {
	needs := []string{"root", "pid1"}
	var runsD, runsH, runsS, runsB int
	Register(Figure{
		Name: "tcp ingress: bulk throughput (1 GiB, loopback)", Baseline: "client straight to the backend",
		Unit: "MB/s", Higher: true, Needs: needs,
		Run: func() (float64, float64, error) { return ingressVs(&runsD, "") },
	})
	Register(Figure{
		Name: "tcp ingress: bulk throughput (1 GiB, loopback)", Baseline: "HAProxy, mode tcp, splice-request/-response",
		Unit: "MB/s", Goal: 1.3, Higher: true, Needs: append(needs, "exec:haproxy"),
		Run: func() (float64, float64, error) { return ingressVs(&runsH, "haproxy") },
	})
	Register(Figure{
		Name: "tcp ingress: bulk throughput (1 GiB, loopback)", Baseline: "socat -b 262144",
		Unit: "MB/s", Higher: true, Needs: append(needs, "exec:socat"),
		Run: func() (float64, float64, error) { return ingressVs(&runsS, "socat") },
	})
	Register(Figure{
		Name: "tcp ingress: bulk throughput (1 GiB, loopback)", Baseline: "a bare Go relay (io.Copy both ways, spliced by Go)",
		Unit: "MB/s", Higher: true, Needs: needs,
		Run: func() (float64, float64, error) { return ingressVs(&runsB, "bare") },
	})
}

// loUp brings the namespace's loopback up (a fresh one has it down).
func loUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lo)
}

// sink accepts connections, reads each to its end and answers one byte.
func sink() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	sinkOn(ln)
	return ln.Addr().String(), func() { ln.Close() }, nil
}

// sinkOn serves ln as sink does, until ln is closed.
func sinkOn(ln net.Listener) {
	serveEach(ln, func(c net.Conn) {
		io.Copy(io.Discard, c)
		c.Write([]byte{1})
	})
}

// serveEach serves each connection ln accepts with handle, in a goroutine
// of its own that closes it after, until ln is closed: the accept loop of
// the figures' backends and relays (nstest.ServeEach is the tests').
func serveEach(ln net.Listener, handle func(c net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// pushBulk sends ingressBulk bytes to addr and waits for the sink's byte.
func pushBulk(addr string) (float64, error) {
	return pushBulkDial(func() (net.Conn, error) { return net.Dial("tcp", addr) })
}

// pushBulkDial is pushBulk on a connection dial makes.
func pushBulkDial(dial func() (net.Conn, error)) (float64, error) {
	var c net.Conn
	var err error
	for i := 0; i < 100; i++ { // a relay just started may not listen yet
		if c, err = dial(); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	for sent := 0; sent < ingressBulk; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			return 0, err
		}
	}
	c.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return 0, fmt.Errorf("no acknowledgement: %w", err)
	}
	return float64(ingressBulk) / 1e6 / time.Since(start).Seconds(), nil
}

// ingressVs measures the tcp ingress and, as the baseline, other ("" for
// the client straight to the sink, "bare" for bareRelay, or the program
// startRelay runs), the order alternating per run.
func ingressVs(runs *int, other string) (ours, base float64, err error) {
	if err := loUp(); err != nil {
		return 0, 0, err
	}
	backend, stop, err := sink()
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	ingAddr, closeIngress, err := tcpIngress(backend, tcp.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer closeIngress()

	baseAddr := backend
	switch other {
	case "bare":
		addr, stopBare, err := bareRelay(backend)
		if err != nil {
			return 0, 0, err
		}
		defer stopBare()
		baseAddr = addr
	case "haproxy", "socat":
		addr, stopOther, err := startRelay(other, backend)
		if err != nil {
			return 0, 0, err
		}
		defer stopOther()
		baseAddr = addr
	}
	*runs++
	if *runs%2 == 1 {
		if ours, err = pushBulk(ingAddr); err == nil {
			base, err = pushBulk(baseAddr)
		}
	} else {
		if base, err = pushBulk(baseAddr); err == nil {
			ours, err = pushBulk(ingAddr)
		}
	}
	return ours, base, err
}

// tcpIngress puts a tcp ingress listener (the device's plane, with opt)
// on a free loopback port in front of backend, a port on loopback as a
// provider in the host's namespace has it, and returns its address.
func tcpIngress(backend string, opt tcp.Options) (string, func(), error) {
	_, portS, _ := net.SplitHostPort(backend)
	port, _ := strconv.Atoi(portS)
	addr, err := freePort()
	if err != nil {
		return "", nil, err
	}
	plane := &ingress.Plane{Log: quietLog(), TCP: opt}
	s, err := plane.Listen(actors.IngressListener{Type: "tcp", Addr: addr, Rules: []actors.IngressRule{{
		IngressRule: state.IngressRule{Type: "tcp", Provider: "backend", Service: "bench"}, Port: port}}},
		[]*xconnect.Stats{{}})
	if err != nil {
		return "", nil, err
	}
	s.Backend(0, xconnect.Ends{ProviderPid: os.Getpid()})
	return addr, func() { s.Close() }, nil
}

// bareRelay is the simplest relay Go allows, in this process as ours is:
// per connection a connection to backend and an io.Copy each way (Go
// splices TCP to TCP through a pipe of its pool, held for the life of
// the copy), a half-close passed on. It returns its address.
func bareRelay(backend string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	serveEach(ln, func(c net.Conn) {
		b, err := net.Dial("tcp", backend)
		if err != nil {
			return
		}
		defer b.Close()
		done := make(chan struct{})
		go func() {
			io.Copy(b, c)
			b.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		io.Copy(c, b)
		c.(*net.TCPConn).CloseWrite()
		<-done
	})
	return ln.Addr().String(), func() { ln.Close() }, nil
}

// startRelay runs HAProxy (splicing both ways) or socat in front of
// backend and returns its address.
func startRelay(which, backend string) (string, func(), error) {
	addr, err := freePort()
	if err != nil {
		return "", nil, err
	}
	var cmd *exec.Cmd
	dir, err := os.MkdirTemp("", "pvbench-relay")
	if err != nil {
		return "", nil, err
	}
	switch which {
	case "haproxy":
		cfg := filepath.Join(dir, "haproxy.cfg")
		conf := fmt.Sprintf(`global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option splice-request
    option splice-response
frontend in
    bind %s
    default_backend out
backend out
    server s %s
`, addr, backend)
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			return "", nil, err
		}
		cmd = exec.Command("haproxy", "-db", "-f", cfg)
	case "socat":
		_, port, _ := net.SplitHostPort(addr)
		cmd = exec.Command("socat", "-b", "262144", "TCP-LISTEN:"+port+",bind=127.0.0.1,reuseaddr,fork", "TCP:"+backend)
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }, nil
}
