package bench

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect/tcp"
)

// The idle-connections figure of the tcp ingress: 10 000 client
// connections (fewer where the hard descriptor limit, which root may not
// raise in a container, leaves less room: each costs up to 8 descriptors
// here: client, backend, the relay's two sockets and its splice pipes)
// held open through one listener to one backend, and the
// growth of this process's RSS per connection once they are all carried,
// less the growth of the same 10 000 connections made straight to the
// backend (the client and backend ends live in this process too; neither
// runs a goroutine per connection). What remains is the relay's: its
// goroutines, buffers and bookkeeping.

// idleIngressConns is 10 000, or what the descriptor limit allows.
var idleIngressConns = func() int {
	var l unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &l) != nil {
		return 10000
	}
	return int(min(10000, (l.Max-1024)/8))
}()

func init() {
	Register(Figure{
		Name:     fmt.Sprintf("tcp ingress: RSS per idle connection (%d held open)", idleIngressConns),
		Baseline: "none", Unit: "KiB", Needs: []string{"root", "pid1"},
		Run: idleIngressMemory,
	})
}

// holder accepts connections and keeps them, with no goroutine of its own
// per connection; n counts them.
func holder() (addr string, n *atomic.Int64, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	var held []net.Conn
	n = &atomic.Int64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
			n.Add(1)
		}
	}()
	return ln.Addr().String(), n, func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	}, nil
}

// openIdle dials n connections to addr and keeps them.
func openIdle(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			var l unix.Rlimit
			unix.Getrlimit(unix.RLIMIT_NOFILE, &l)
			fds, _ := os.ReadDir("/proc/self/fd")
			return nil, fmt.Errorf("connection %d (%d descriptors open, limit %d): %w", i, len(fds), l.Cur, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// settledRSS is VmRSS in KiB after the garbage of the setup is returned.
func settledRSS() float64 {
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(200 * time.Millisecond)
	return float64(selfStatus("VmRSS")["VmRSS"])
}

func idleIngressMemory() (float64, float64, error) {
	if err := loUp(); err != nil {
		return 0, 0, err
	}
	// Up to 8 descriptors per connection: the soft limit goes up to the
	// hard one.
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		return 0, 0, err
	}
	raised := unix.Rlimit{Cur: old.Max, Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err != nil {
		return 0, 0, fmt.Errorf("raise the descriptor limit: %w", err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	grow := func(addr string, held *atomic.Int64) (float64, error) {
		before := settledRSS()
		conns, err := openIdle(addr, idleIngressConns)
		if err != nil {
			return 0, err
		}
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		// Carried: the backend holds every one (through the relay,
		// once the relay has dialled it).
		for deadline := time.Now().Add(30 * time.Second); held.Load() < int64(idleIngressConns); {
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("the backend holds %d of %d connections", held.Load(), idleIngressConns)
			}
			time.Sleep(20 * time.Millisecond)
		}
		fds, _ := os.ReadDir("/proc/self/fd")
		logf("idle connections to %s: %d descriptors open", addr, len(fds))
		return settledRSS() - before, nil
	}

	backend, held, stop, err := holder()
	if err != nil {
		return 0, 0, err
	}
	direct, err := grow(backend, held)
	stop()
	if err != nil {
		return 0, 0, err
	}

	backend, held, stop, err = holder()
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	ingAddr, closeIngress, err := tcpIngress(backend, tcp.Options{MaxConns: idleIngressConns})
	if err != nil {
		return 0, 0, err
	}
	defer closeIngress()
	through, err := grow(ingAddr, held)
	if err != nil {
		return 0, 0, err
	}
	logf("idle connections: RSS growth %.0f KiB through ingress, %.0f KiB direct, for %d", through, direct, idleIngressConns)
	return (through - direct) / float64(idleIngressConns), 0, nil
}
