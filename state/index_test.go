package state

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// The indexes give the answers of the scans they replace: each is checked
// against the plain scan, on random inputs dense enough to collide.

func TestFirstOverlapsIsTheFirstEarlierOverlap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		n := rng.IntN(40)
		ps := make([]netip.Prefix, n)
		for i := range ps {
			if rng.IntN(10) == 0 {
				continue // an invalid subnet, skipped
			}
			a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(4) * 64), 0})
			ps[i] = netip.PrefixFrom(a, 8+rng.IntN(23)).Masked()
		}
		got := firstOverlaps(ps)
		for j := range ps {
			want := -1
			for i := 0; i < j && ps[j].IsValid(); i++ {
				if ps[i].IsValid() && ps[i].Overlaps(ps[j]) {
					want = i
					break
				}
			}
			if got[j] != want {
				t.Fatalf("round %d, %v: prefix %d (%s) overlaps first %d, want %d", round, ps, j, ps[j], got[j], want)
			}
		}
	}
}

func TestListenIndexIsTheFirstEarlierCollision(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	addrs := []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified(), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("::1")}
	prefixes := []string{"/", "/api", "/x"}
	for round := 0; round < 500; round++ {
		var rules []IngressRule
		for i := rng.IntN(20); i > 0; i-- {
			r := IngressRule{Type: "tcp", Addr: netip.AddrPortFrom(addrs[rng.IntN(len(addrs))], uint16(80+rng.IntN(3)))}
			if rng.IntN(2) == 0 {
				r.Type, r.Prefix = "http", prefixes[rng.IntN(len(prefixes))]
			}
			rules = append(rules, r)
		}
		x, links := newListenIndex(), newListenIndex()
		for j, r := range rules {
			// The scans validateIngress and validateLinkListeners made.
			wantRule, wantAddr := -1, -1
			for i, c := range rules[:j] {
				if !overlaps(c.Addr, r.Addr) {
					continue
				}
				if wantAddr < 0 {
					wantAddr = i
				}
				if c.Type == "http" && r.Type == "http" && c.Prefix != r.Prefix && c.Addr == r.Addr {
					continue
				}
				if wantRule < 0 {
					wantRule = i
				}
			}
			if got := x.collision(r); got != wantRule {
				t.Fatalf("round %d, %+v: rule %d collides first with %d, want %d", round, rules, j, got, wantRule)
			}
			if got := links.overlapping(r.Addr); got != wantAddr {
				t.Fatalf("round %d, %+v: address %d overlaps first %d, want %d", round, rules, j, got, wantAddr)
			}
			x.addRule(r, j)
			links.add(r.Addr, j)
		}
	}
}

// Validation is linear in the state, and reports each fault once: with a
// problem per pair of pools that overlap, a state of a few hundred
// kilobytes with 5000 pools on one subnet made 12.5 million problems
// (3.8 GB) in the supervisor that checked an upload.
func TestManyOverlappingPoolsAreOneProblemEach(t *testing.T) {
	const n = 5000
	pools := map[string]any{}
	for i := 0; i < n; i++ {
		pools[fmt.Sprintf("p%04d", i)] = map[string]any{"bridge": fmt.Sprintf("b%d", i), "subnet": "10.0.0.0/8", "gateway": "10.0.0.1"}
	}
	data, err := json.Marshal(map[string]any{
		"#spec":       SpecSystem1,
		"device.json": map[string]any{"groups": []any{map[string]any{"name": "g"}}, "network": map[string]any{"pools": pools}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(data, Options{AppEngine: true})
	probs := Problems(err)
	if len(probs) != n-1 {
		t.Fatalf("%d problems, want one per pool after the first (%d)", len(probs), n-1)
	}
	if p := probs[len(probs)-1]; p.Path != "network.pools.p4999.subnet" || !strings.Contains(p.Msg, "overlaps pool p0000 (10.0.0.0/8)") {
		t.Errorf("last problem %v, want p4999 overlapping p0000, the first", p)
	}
}

// BenchmarkParseManyContainers parses a state of 10 000 containers, each
// requiring the service of the next: linear, it takes milliseconds where
// the scans took seconds.
func BenchmarkParseManyContainers(b *testing.B) {
	const n = 10000
	st := map[string]any{"#spec": SpecSystem1, "device.json": map[string]any{"groups": []any{map[string]any{"name": "g"}}}}
	for i := 0; i < n; i++ {
		c := fmt.Sprintf("c%d", i)
		st[c+"/run.json"] = map[string]any{"name": c, "root-volume": "r", "services": map[string]any{"required": []any{fmt.Sprintf("s%d", (i+1)%n)}}}
		st[c+"/services.json"] = []any{map[string]any{"name": fmt.Sprintf("s%d", i), "type": "unix", "socket": "/s"}}
		st[c+"/r"] = sha1
	}
	data, err := json.Marshal(st)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		if _, err := Parse(data, Options{AppEngine: true}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestProviderIsTheFirstMatchingExporter(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	types := []string{"", "unix", "tcp"}
	names := []string{"a", "b"}
	for round := 0; round < 500; round++ {
		p := &parser{st: &State{}}
		for i := rng.IntN(6); i > 0; i-- {
			c := &Container{Name: fmt.Sprintf("c%d", i)}
			for j := rng.IntN(4); j > 0; j-- {
				c.Exports = append(c.Exports, ServiceExport{Name: names[rng.IntN(2)], Type: types[rng.IntN(3)]})
			}
			p.st.Containers = append(p.st.Containers, c)
		}
		for _, name := range names {
			for _, want := range types {
				// The scan validateServices made, with exportOf, the
				// first export of the name in each container.
				var found *ServiceExport
				wrong := ""
				for _, c := range p.st.Containers {
					var e *ServiceExport
					for i := range c.Exports {
						if c.Exports[i].Name == name {
							e = &c.Exports[i]
							break
						}
					}
					if e == nil {
						continue
					}
					if typesMatch(want, e.Type) {
						found = e
						break
					}
					wrong = c.Name + " " + e.Type
				}
				got, gotWrong := p.provider(name, want)
				w := ""
				if gotWrong != nil {
					w = gotWrong.container.Name + " " + gotWrong.export.Type
				}
				if got != found || (found == nil && w != wrong) {
					t.Fatalf("round %d, %s of type %q: provider %p (wrong %q), the scan %p (wrong %q)", round, name, want, got, w, found, wrong)
				}
			}
		}
	}
}
