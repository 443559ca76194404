package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
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
func (s *fakeIngressSetup) Close() error             { s.f.record("close " + s.addr); return nil }
func (s *fakeIngressSetup) Describe() string         { return s.addr }
func (s *fakeIngressSetup) Kernel() string           { return "" }
func (s *fakeIngressSetup) KernelConnections() int64 { return 0 }

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
	// Closed before the revision said it stopped: a process that exits
	// then leaves no kernel path behind.
	closed := map[string]bool{}
	for _, ev := range p.Events() {
		closed[ev] = true
	}
	if !closed["close 0.0.0.0:80"] || !closed["close 127.0.0.1:2222"] {
		t.Fatalf("listeners not closed when the shutdown returned: %q", p.Events())
	}
}

// A rule knows its provider's bridge, when the provider is on a bridge
// pool, and every listener the bridges whose clients stay with it: what
// the kernel path needs.
func TestIngressListenersBridges(t *testing.T) {
	doc := map[string]any{
		"#spec": state.SpecSystem1,
		"device.json": map[string]any{
			"groups": []any{map[string]any{"name": "app"}},
			"network": map[string]any{"pools": map[string]any{
				"lan":  map[string]any{"bridge": "pvbr0", "subnet": "10.0.5.0/24", "gateway": "10.0.5.1"},
				"iso":  map[string]any{"bridge": "pvbr1", "subnet": "10.0.6.0/24", "gateway": "10.0.6.1"},
				"wifi": map[string]any{"type": "macvlan", "parent": "wlan0", "subnet": "192.168.7.0/24", "gateway": "192.168.7.1"},
			}},
			"ingress": []any{
				map[string]any{"type": "tcp", "external": ":9080", "provider": "web", "service": "web"},
				map[string]any{"type": "tcp", "external": ":9081", "provider": "air", "service": "web"},
				map[string]any{"type": "tcp", "external": ":9082", "provider": "host", "service": "web"},
			},
		},
	}
	for name, net := range map[string]map[string]any{"web": {"pool": "lan"}, "air": {"pool": "wifi"}, "host": nil} {
		run := map[string]any{"name": name, "group": "app", "exports": "services.json"}
		if net != nil {
			run["network"] = net
		}
		doc[name+"/run.json"] = run
		doc[name+"/services.json"] = []any{map[string]any{"name": "web", "type": "tcp", "port": 80}}
	}
	data, _ := json.Marshal(revtest.WithRootVolumes(doc))
	st, err := state.Parse(data, state.Options{AppEngine: true})
	if err != nil {
		t.Fatal(err)
	}
	ls := ingressListeners(st)
	if len(ls) != 3 {
		t.Fatalf("%d listeners", len(ls))
	}
	for i, want := range []string{"pvbr0", "", ""} {
		if got := ls[i].Rules[0].Bridge; got != want || ls[i].Rules[0].Port != 80 {
			t.Errorf("%s: bridge %q port %d, want %q 80", ls[i].Addr, got, ls[i].Rules[0].Port, want)
		}
		if got := strings.Join(ls[i].Local, ","); got != "pvbr1,pvbr0" && got != "pvbr0,pvbr1" {
			t.Errorf("%s: local %q, want both bridges and no macvlan", ls[i].Addr, got)
		}
	}
}
