package actors

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/xconnect"
)

// heldPlane holds its first Establish until release is closed, and
// counts the setups it made and closed.
type heldPlane struct {
	fakePlane
	release chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (p *heldPlane) Establish(l xconnect.Link, e xconnect.Ends, st *xconnect.Stats) (xconnect.Setup, error) {
	first := false
	p.once.Do(func() { first = true })
	if first {
		close(p.entered)
		<-p.release
	}
	return p.fakePlane.Establish(l, e, st)
}

// A link actor restarted after a panic while its establishing was under
// way closes that setup when it comes back, instead of taking it for its
// own. Before, each incarnation counted its generations from 0: the old
// setup matched the new incarnation's first generation and overwrote the
// new setup, which was never closed (its listener and consumer socket
// leaked until pantavisor ended).
func TestLinkPanicDuringEstablishLeaksNoSetup(t *testing.T) {
	p := &heldPlane{release: make(chan struct{}), entered: make(chan struct{})}
	sys, log := bareSystem(t)
	link := xconnect.Link{Consumer: "app", Name: "bus", Type: "unix", Provider: "nm"}
	ends := xconnect.Ends{ConsumerPid: 10, ProviderPid: 20}
	pid := sys.Root.Spawn(newLinkProps(link, p, log))

	sys.Root.Send(pid, &linkEnds{ends: ends})
	waitClosed(t, p.entered, "the first establishing never began")
	sys.Root.Send(pid, &injectedPanic{reason: "injected by the test"})
	// The revision tells a restarted link its ends again.
	sys.Root.Send(pid, &linkEnds{ends: ends})
	waitPlane(t, &p.fakePlane, "establish app/bus c=10 p=20")
	close(p.release)
	waitAny(t, &p.fakePlane, "close app/bus") // the first one, superseded
	if err := sys.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	waitAllClosed(t, p, 2)
}

// A link actor that stops for good while its establishing is under way
// closes what that establishing makes. Before, the setup was sent to the
// stopped actor, lost as a dead letter, and never closed.
func TestLinkStoppedDuringEstablishLeaksNoSetup(t *testing.T) {
	p := &heldPlane{release: make(chan struct{}), entered: make(chan struct{})}
	sys, log := bareSystem(t)
	link := xconnect.Link{Consumer: "app", Name: "bus", Type: "unix", Provider: "nm"}
	pid := sys.Root.Spawn(newLinkProps(link, p, log))
	sys.Root.Send(pid, &linkEnds{ends: xconnect.Ends{ConsumerPid: 10, ProviderPid: 20}})
	waitClosed(t, p.entered, "the establishing never began")
	if err := sys.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	close(p.release)
	waitAllClosed(t, p, 1)
}

// bareSystem is an actor system of its own for a test that spawns one
// actor under test, with a logger that keeps quiet.
func bareSystem(t *testing.T) (*actor.ActorSystem, *slog.Logger) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return log }))
	t.Cleanup(sys.Shutdown)
	return sys, log
}

// waitClosed waits until ch is closed, failing with what after 5 s.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal(what)
	}
}

// waitAllClosed waits until p has made n setups and closed each.
func waitAllClosed(t *testing.T, p *heldPlane, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		made, closed := 0, 0
		for _, ev := range p.Events() {
			switch {
			case strings.HasPrefix(ev, "establish "):
				made++
			case strings.HasPrefix(ev, "close "):
				closed++
			}
		}
		if made == n && closed == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d setups made, %d closed, want %d and %d: %v", made, closed, n, n, p.Events())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heldIngress holds its first Listen until release is closed.
type heldIngress struct {
	fakeIngress
	release chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (p *heldIngress) Listen(l IngressListener, stats []*xconnect.Stats) (IngressSetup, error) {
	first := false
	p.once.Do(func() { first = true })
	if first {
		close(p.entered)
		<-p.release
	}
	return p.fakeIngress.Listen(l, stats)
}

// An ingress actor that stops for good while its listener is being bound
// closes that listener when the bind comes back. Before, the listener
// went to the stopped actor as a dead letter and kept its address bound
// until pantavisor ended: an ingress bound again there (a revision
// restarted after a panic stops and makes its children anew) never could.
func TestIngressStoppedDuringBindLeaksNoListener(t *testing.T) {
	p := &heldIngress{release: make(chan struct{}), entered: make(chan struct{})}
	sys, log := bareSystem(t)
	l := IngressListener{Type: "tcp", Addr: "0.0.0.0:8080", Rules: []IngressRule{{Port: 80}}}
	pid := sys.Root.Spawn(newIngressProps(l, p, log))
	waitClosed(t, p.entered, "the bind never began")
	if err := sys.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	close(p.release)
	waitPlane(t, &p.fakePlane, "listen tcp 0.0.0.0:8080", "close 0.0.0.0:8080")
}
