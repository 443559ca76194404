package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/xconnect"
)

// fakeIngress records what the ingress actors ask of the plane; the real
// one (package ingress) has its integration tests.
type fakeIngress struct {
	fakePlane
	mu sync.Mutex
	// bindFail makes the next binds of this address fail.
	bindFail map[string]int
}

func (f *fakeIngress) Listen(l IngressListener, stats []*xconnect.Stats) (IngressSetup, error) {
	f.mu.Lock()
	fail := f.bindFail[l.Addr] > 0
	if fail {
		f.bindFail[l.Addr]--
	}
	f.mu.Unlock()
	if fail {
		f.record("bind-fail " + l.Addr)
		return nil, errors.New("address already in use")
	}
	if len(stats) != len(l.Rules) {
		return nil, fmt.Errorf("%d stats for %d rules", len(stats), len(l.Rules))
	}
	prefixes := ""
	for _, r := range l.Rules {
		prefixes += " " + r.Prefix + ">" + r.Provider
	}
	f.record("listen " + l.Type + " " + l.Addr + prefixes)
	return &fakeIngressSetup{f: f, addr: l.Addr}, nil
}

type fakeIngressSetup struct {
	f    *fakeIngress
	addr string
}

func (s *fakeIngressSetup) Backend(i int, e xconnect.Ends) {
	s.f.record(fmt.Sprintf("backend %s %d p=%d", s.addr, i, e.ProviderPid))
}
func (s *fakeIngressSetup) Close() error     { s.f.record("close " + s.addr); return nil }
func (s *fakeIngressSetup) Describe() string { return s.addr }

func ingressState(t *testing.T) map[string]any {
	doc := meshState(t)
	doc["nm/services.json"] = []any{
		map[string]any{"name": "bus", "type": "unix", "socket": "/run/bus.sock"},
		map[string]any{"name": "web", "type": "http", "port": 8080},
		map[string]any{"name": "ssh", "type": "tcp", "port": 22},
	}
	doc["device.json"] = map[string]any{"groups": []any{map[string]any{"name": "root"}, map[string]any{"name": "platform"}, map[string]any{"name": "app"}}, "ingress": []any{
		map[string]any{"type": "http", "external": ":80/api", "provider": "nm", "service": "web"},
		map[string]any{"type": "http", "external": ":80/", "provider": "nm", "service": "web"},
		map[string]any{"type": "tcp", "external": "127.0.0.1:2222", "provider": "nm", "service": "ssh"},
	}}
	return doc
}

// Rules on one address share a listener; a listener that cannot bind is
// retried while the rest runs; backends follow the provider's restarts;
// the graph lists the rules as upstream's EXTERNAL links.
func TestIngressListenersFollowProviders(t *testing.T) {
	e, p := newFakeEngine(), &fakeIngress{bindFail: map[string]int{"0.0.0.0:80": 1}}
	sys := startSystemCfg(t, Config{State: parseState(t, ingressState(t)), Engine: e, Ingress: p})
	waitStatus(t, sys, map[string]messages.Status{"nm": messages.StatusStarted, "app": messages.StatusStarted})
	nm := e.run("nm").pid
	waitAny(t, &p.fakePlane, "listen tcp 127.0.0.1:2222 >nm")
	waitPlane(t, &p.fakePlane, "bind-fail 0.0.0.0:80", "listen http 0.0.0.0:80 /api>nm />nm")
	waitPlane(t, &p.fakePlane, fmt.Sprintf("backend 0.0.0.0:80 0 p=%d", nm))
	waitPlane(t, &p.fakePlane, fmt.Sprintf("backend 0.0.0.0:80 1 p=%d", nm))

	if n := findLink(t, sys, "ingress:0.0.0.0:80"); n.Status != "listening" || n.Info["routes"] != "/api=nm/web,/=nm/web" {
		t.Fatalf("ingress node %+v", n)
	}
	g, _ := sys.XconnectGraph()
	var ext []messages.LinkInfo
	for _, l := range g {
		if l.Consumer == "EXTERNAL" {
			ext = append(ext, l)
		}
	}
	if len(ext) != 3 || ext[2].Name != "ssh" || *ext[2].Target != "127.0.0.1:2222" || ext[2].Role != "EXTERNAL" || ext[2].ProviderPid != nm {
		t.Fatalf("ingress links in the graph: %+v", ext)
	}

	if err := sys.ContainerAction("nm", "restart"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sys, map[string]messages.Status{"nm": messages.StatusStarted})
	waitPlane(t, &p.fakePlane, fmt.Sprintf("backend 127.0.0.1:2222 0 p=%d", e.run("nm").pid))
	for _, ev := range p.Events() {
		if ev == "close 127.0.0.1:2222" {
			t.Fatalf("a provider restart closed a listener: %q", p.Events())
		}
	}
}

func TestIngressClosesWithItsRevision(t *testing.T) {
	e, p := newFakeEngine(), &fakeIngress{}
	sys := startSystemCfg(t, Config{State: parseState(t, ingressState(t)), Engine: e, Ingress: p})
	waitPlane(t, &p.fakePlane, "listen http 0.0.0.0:80")
	waitPlane(t, &p.fakePlane, "listen tcp 127.0.0.1:2222")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	waitAny(t, &p.fakePlane, "close 0.0.0.0:80")
	waitAny(t, &p.fakePlane, "close 127.0.0.1:2222")
}
