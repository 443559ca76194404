package actors

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/xconnect"
)

// fakePlane records what the link actors ask of the data plane; the real
// plane (xconnect/mesh) has its integration tests with real containers.
type fakePlane struct {
	recorder
	mu sync.Mutex
	// failures makes the next n Establish calls fail.
	failures int
	// delay makes Establish take a while.
	delay time.Duration
	// live holds, per link, the consumer pid of each setup made and not
	// closed yet.
	live map[string][]int
}

// liveSetups returns the consumer pids of the setups of key still open.
func (p *fakePlane) liveSetups(key string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.live[key])
}

func (p *fakePlane) Establish(l xconnect.Link, e xconnect.Ends, _ *xconnect.Stats) (xconnect.Setup, error) {
	p.mu.Lock()
	fail := p.failures > 0
	if fail {
		p.failures--
	}
	delay := p.delay
	p.mu.Unlock()
	time.Sleep(delay)
	if fail {
		p.record("fail " + l.Key())
		return nil, fmt.Errorf("target is a directory")
	}
	p.record(fmt.Sprintf("establish %s c=%d p=%d", l.Key(), e.ConsumerPid, e.ProviderPid))
	p.mu.Lock()
	if p.live == nil {
		p.live = map[string][]int{}
	}
	p.live[l.Key()] = append(p.live[l.Key()], e.ConsumerPid)
	p.mu.Unlock()
	return &fakeLinkSetup{p: p, key: l.Key(), consumer: e.ConsumerPid}, nil
}

type fakeLinkSetup struct {
	p        *fakePlane
	key      string
	consumer int
	closed   sync.Once
}

func (s *fakeLinkSetup) Provider(e xconnect.Ends) {
	s.p.record(fmt.Sprintf("provider %s p=%d", s.key, e.ProviderPid))
}
func (s *fakeLinkSetup) Close() error {
	s.p.record("close " + s.key)
	s.closed.Do(func() {
		s.p.mu.Lock()
		live := s.p.live[s.key]
		if i := slices.Index(live, s.consumer); i >= 0 {
			s.p.live[s.key] = slices.Delete(live, i, i+1)
		}
		s.p.mu.Unlock()
	})
	return nil
}
func (s *fakeLinkSetup) Describe() string { return "fake " + s.key }

// meshState: nm exports "bus" (unix); app requires it, web asks for it as
// optional, and "gone" is optional and exported by nobody.
func meshState(t *testing.T) map[string]any {
	return map[string]any{
		"#spec": "pantavisor-service-system@1",
		"nm/run.json": map[string]any{"name": "nm", "exports": "services.json", "restart_policy": "container",
			"auto_recovery": map[string]any{"policy": "no"}},
		"nm/services.json": []any{map[string]any{"name": "bus", "type": "unix", "socket": "/run/bus.sock"}},
		"app/run.json": map[string]any{"name": "app", "restart_policy": "container", "auto_recovery": map[string]any{"policy": "no"},
			"services": map[string]any{"required": []any{map[string]any{"name": "bus", "type": "unix", "target": "/run/nm/bus.sock"}},
				"optional": []any{map[string]any{"name": "gone", "type": "unix"}}}},
	}
}

// waitPlane waits until the plane's events include each of want, in
// that order.
func waitPlane(t *testing.T, p *fakePlane, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := p.Events()
		i := 0
		for _, e := range ev {
			if i < len(want) && (e == want[i] || strings.HasPrefix(e, want[i]+" ")) {
				i++
			}
		}
		if i == len(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("plane events %q; want in order %q", ev, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLinkFollowsItsEnds(t *testing.T) {
	e, p := newFakeEngine(), &fakePlane{}
	sys := startSystemCfg(t, Config{State: parseState(t, meshState(t)), Engine: e, Links: p})
	waitStatus(t, sys, map[string]messages.Status{"nm": messages.StatusStarted, "app": messages.StatusStarted})
	nm, app := e.run("nm").pid, e.run("app").pid
	// Both start together: the link may be made while nm is still
	// starting, and pointed at it once it runs.
	waitAny(t, p, fmt.Sprintf("establish app/bus c=%d p=%d", app, nm), fmt.Sprintf("provider app/bus p=%d", nm))

	// The graph in upstream's shape: the optional service nobody exports
	// has no link.
	g, err := sys.XconnectGraph()
	if err != nil || len(g) != 1 || g[0].Consumer != "app" || g[0].Provider != "nm" || g[0].ConsumerPid != app ||
		g[0].Socket == nil || *g[0].Socket != "/run/bus.sock" || g[0].Target == nil || *g[0].Target != "/run/nm/bus.sock" || g[0].Role != "any" {
		t.Fatalf("graph %+v, %v", g, err)
	}

	// The provider restarts: the link is re-pointed, not re-made.
	if err := sys.ContainerAction("nm", "restart"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sys, map[string]messages.Status{"nm": messages.StatusStarted})
	nm2 := e.run("nm").pid
	waitPlane(t, p, fmt.Sprintf("provider app/bus p=%d", nm2))
	if slices.Contains(p.Events(), "close app/bus") {
		t.Fatalf("a provider restart closed the link: %q", p.Events())
	}

	// The consumer restarts: the old link closes when it stops, a new one
	// is made in its new namespaces.
	if err := sys.ContainerAction("app", "restart"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	app2 := e.run("app").pid
	// Both happen in the background, in either order: the old end is in
	// a namespace that is gone, the new one in the new namespace.
	waitPlane(t, p, "close app/bus")
	waitPlane(t, p, fmt.Sprintf("establish app/bus c=%d p=%d", app2, nm2))

	// The provider stops for good: the link closes and stays closed.
	if err := sys.ContainerAction("nm", "stop"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sys, map[string]messages.Status{"nm": messages.StatusStopped})
	waitPlane(t, p, fmt.Sprintf("establish app/bus c=%d p=%d", app2, nm2), "close app/bus")
	time.Sleep(50 * time.Millisecond) // room for a wrong re-make to show
	if ev := p.Events(); strings.HasPrefix(ev[len(ev)-1], "establish") {
		t.Fatalf("link re-made without its provider: %q", ev)
	}
	n := findLink(t, sys, "link:app:bus")
	if n.Status != "waiting" || n.Info["consumer"] != "app" || n.Info["service"] != "bus" {
		t.Fatalf("link node %+v", n)
	}
}

// waitAny waits until the plane's events include one of want.
func waitAny(t *testing.T, p *fakePlane, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.ContainsFunc(p.Events(), func(e string) bool { return slices.Contains(want, e) }) {
		if time.Now().After(deadline) {
			t.Fatalf("plane events %q; want one of %q", p.Events(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLinkRetriesAFailedEstablish(t *testing.T) {
	e, p := newFakeEngine(), &fakePlane{failures: 2}
	sys := startSystemCfg(t, Config{State: parseState(t, meshState(t)), Engine: e, Links: p})
	waitStatus(t, sys, map[string]messages.Status{"nm": messages.StatusStarted, "app": messages.StatusStarted})
	waitPlane(t, p, "fail app/bus", "fail app/bus")
	waitAny(t, p, fmt.Sprintf("establish app/bus c=%d p=%d", e.run("app").pid, e.run("nm").pid),
		fmt.Sprintf("establish app/bus c=%d p=0", e.run("app").pid))
	if n := findLink(t, sys, "link:app:bus"); n.Status != "established" || n.LastFailure != "" {
		t.Fatalf("link node after retries %+v", n)
	}
}

func TestStoppingRevisionClosesItsLinks(t *testing.T) {
	e, p := newFakeEngine(), &fakePlane{}
	sys := startSystemCfg(t, Config{State: parseState(t, meshState(t)), Engine: e, Links: p})
	waitStatus(t, sys, map[string]messages.Status{"nm": messages.StatusStarted, "app": messages.StatusStarted})
	waitPlane(t, p, fmt.Sprintf("establish app/bus c=%d", e.run("app").pid))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	waitPlane(t, p, "close app/bus")
}

// findLink is the node of the link actor named name in GET /actors.
func findLink(t *testing.T, sys *System, name string) *messages.Node {
	t.Helper()
	var found *messages.Node
	var walk func(n *messages.Node)
	walk = func(n *messages.Node) {
		if strings.HasSuffix(n.Path, "/"+name) {
			found = n
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(sys.Tree())
	if found == nil {
		t.Fatalf("no actor %s in the tree", name)
	}
	return found
}
