package ipam

import (
	"errors"
	"math/rand"
	"net/netip"
	"strconv"
	"testing"
)

func mustNew(t testing.TB, subnet, gw string) *Allocator {
	t.Helper()
	a, err := New(netip.MustParsePrefix(subnet), netip.MustParseAddr(gw))
	if err != nil {
		t.Fatalf("New(%s, %s): %v", subnet, gw, err)
	}
	return a
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name, subnet, gw string
	}{
		{"ipv6 subnet", "fd00::/64", "fd00::1"},
		{"too small /31", "10.0.0.0/31", "10.0.0.1"},
		{"too small /32", "10.0.0.1/32", "10.0.0.1"},
		{"host bits", "10.0.0.1/24", "10.0.0.2"},
		{"gateway outside", "10.0.0.0/24", "10.0.1.1"},
		{"gateway ipv6", "10.0.0.0/24", "::1"},
		{"gateway network", "10.0.0.0/24", "10.0.0.0"},
		{"gateway broadcast", "10.0.0.0/24", "10.0.0.255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(netip.MustParsePrefix(tt.subnet), netip.MustParseAddr(tt.gw))
			if !errors.Is(err, ErrInvalidPool) {
				t.Fatalf("err = %v, want ErrInvalidPool", err)
			}
		})
	}
	if _, err := New(netip.Prefix{}, netip.MustParseAddr("10.0.0.1")); !errors.Is(err, ErrInvalidPool) {
		t.Fatalf("zero prefix: err = %v, want ErrInvalidPool", err)
	}
}

func TestAllocateSequence(t *testing.T) {
	tests := []struct {
		name, subnet, gw string
		want             []string
	}{
		{"gateway first", "10.0.5.0/29", "10.0.5.1", []string{"10.0.5.2", "10.0.5.3", "10.0.5.4", "10.0.5.5", "10.0.5.6"}},
		{"gateway last", "10.0.5.0/29", "10.0.5.6", []string{"10.0.5.1", "10.0.5.2", "10.0.5.3", "10.0.5.4", "10.0.5.5"}},
		{"gateway middle", "10.0.5.0/29", "10.0.5.3", []string{"10.0.5.1", "10.0.5.2", "10.0.5.4", "10.0.5.5", "10.0.5.6"}},
		{"slash 30", "192.168.1.0/30", "192.168.1.1", []string{"192.168.1.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustNew(t, tt.subnet, tt.gw)
			if a.Capacity() != len(tt.want) {
				t.Fatalf("Capacity = %d, want %d", a.Capacity(), len(tt.want))
			}
			for i, w := range tt.want {
				got, err := a.Allocate("c" + strconv.Itoa(i))
				if err != nil || got.String() != w {
					t.Fatalf("Allocate #%d = %v, %v; want %s", i, got, err, w)
				}
			}
			if _, err := a.Allocate("extra"); !errors.Is(err, ErrPoolExhausted) {
				t.Fatalf("Allocate past capacity: err = %v, want ErrPoolExhausted", err)
			}
		})
	}
}

func TestAllocateSticky(t *testing.T) {
	a := mustNew(t, "10.0.0.0/24", "10.0.0.1")
	first, _ := a.Allocate("web")
	a.Allocate("cli")
	for i := 0; i < 5; i++ {
		if got, err := a.Allocate("web"); err != nil || got != first {
			t.Fatalf("Allocate(web) again = %v, %v; want %v", got, err, first)
		}
	}
	if a.Len() != 2 {
		t.Fatalf("Len = %d, want 2", a.Len())
	}
	if l, ok := a.Lookup("web"); !ok || l.Addr != first || l.Static {
		t.Fatalf("Lookup(web) = %+v, %v", l, ok)
	}
	if _, ok := a.Lookup("nobody"); ok {
		t.Fatal("Lookup(nobody) found a lease")
	}
}

func TestReserveErrors(t *testing.T) {
	tests := []struct {
		name, owner, ip string
		want            error
		wantText        string
	}{
		{"outside", "web", "10.0.1.5", ErrNotLeasable, "outside 10.0.0.0/24"},
		{"ipv6", "web", "fd00::5", ErrNotLeasable, "outside"},
		{"network", "web", "10.0.0.0", ErrNotLeasable, "network address"},
		{"broadcast", "web", "10.0.0.255", ErrNotLeasable, "broadcast address"},
		{"gateway", "web", "10.0.0.1", ErrNotLeasable, "gateway"},
		{"other owner's lease", "web", "10.0.0.2", ErrAddressInUse, "held by cli"},
		{"empty owner", "", "10.0.0.9", ErrNoOwner, "empty owner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustNew(t, "10.0.0.0/24", "10.0.0.1")
			if got, _ := a.Allocate("cli"); got.String() != "10.0.0.2" {
				t.Fatalf("setup: cli got %v", got)
			}
			err := a.Reserve(tt.owner, netip.MustParseAddr(tt.ip))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !contains(err.Error(), tt.wantText) {
				t.Fatalf("err = %q, want it to mention %q", err, tt.wantText)
			}
			if _, ok := a.Lookup(tt.owner); ok {
				t.Fatalf("failed Reserve left a lease for %q", tt.owner)
			}
		})
	}
}

func TestAllocateErrors(t *testing.T) {
	a := mustNew(t, "10.0.0.0/30", "10.0.0.1")
	if _, err := a.Allocate(""); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("Allocate(\"\"): err = %v, want ErrNoOwner", err)
	}
	a.Allocate("web")
	_, err := a.Allocate("cli")
	if !errors.Is(err, ErrPoolExhausted) || !contains(err.Error(), "allocate for cli in 10.0.0.0/30") {
		t.Fatalf("err = %v, want ErrPoolExhausted naming cli and the pool", err)
	}
}

func TestReserveOwnLease(t *testing.T) {
	a := mustNew(t, "10.0.0.0/24", "10.0.0.1")
	ip, _ := a.Allocate("web")
	// Restart with a static ip equal to the lease it already holds.
	if err := a.Reserve("web", ip); err != nil {
		t.Fatalf("Reserve own lease: %v", err)
	}
	if l, _ := a.Lookup("web"); !l.Static || l.Addr != ip {
		t.Fatalf("lease = %+v, want static %v", l, ip)
	}
	// Reserving again is idempotent.
	if err := a.Reserve("web", ip); err != nil {
		t.Fatalf("Reserve again: %v", err)
	}
	// A different static ip moves the lease and frees the old one.
	if err := a.Reserve("web", netip.MustParseAddr("10.0.0.50")); err != nil {
		t.Fatalf("Reserve new static: %v", err)
	}
	if a.Len() != 1 {
		t.Fatalf("Len = %d after moving, want 1", a.Len())
	}
	if got, _ := a.Allocate("web"); got.String() != "10.0.0.50" {
		t.Fatalf("Allocate after Reserve = %v, want the static 10.0.0.50", got)
	}
}

func TestReserveAheadOfCursor(t *testing.T) {
	a := mustNew(t, "10.0.0.0/29", "10.0.0.1")
	if err := a.Reserve("s", netip.MustParseAddr("10.0.0.3")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range []string{"a", "b", "c", "d"} {
		ip, err := a.Allocate(o)
		if err != nil {
			t.Fatalf("Allocate(%s): %v", o, err)
		}
		got = append(got, ip.String())
	}
	want := []string{"10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("allocations = %v, want %v", got, want)
		}
	}
	a.Release("s")
	if ip, err := a.Allocate("e"); err != nil || ip.String() != "10.0.0.3" {
		t.Fatalf("Allocate after releasing the static = %v, %v; want 10.0.0.3", ip, err)
	}
}

func TestReleaseReuseOrder(t *testing.T) {
	a := mustNew(t, "10.0.0.0/29", "10.0.0.1")
	a.Allocate("a") // .2
	a.Allocate("b") // .3
	a.Release("a")
	a.Release("nobody") // no-op
	// Fresh addresses come before released ones.
	if ip, _ := a.Allocate("c"); ip.String() != "10.0.0.4" {
		t.Fatalf("c = %v, want fresh 10.0.0.4", ip)
	}
	a.Allocate("d") // .5
	a.Allocate("e") // .6
	a.Release("b")
	if ip, _ := a.Allocate("f"); ip.String() != "10.0.0.2" {
		t.Fatalf("f = %v, want oldest release 10.0.0.2", ip)
	}
	if ip, _ := a.Allocate("g"); ip.String() != "10.0.0.3" {
		t.Fatalf("g = %v, want 10.0.0.3", ip)
	}
	want := []Lease{
		{"f", netip.MustParseAddr("10.0.0.2"), false},
		{"g", netip.MustParseAddr("10.0.0.3"), false},
		{"c", netip.MustParseAddr("10.0.0.4"), false},
		{"d", netip.MustParseAddr("10.0.0.5"), false},
		{"e", netip.MustParseAddr("10.0.0.6"), false},
	}
	got := a.Leases()
	if len(got) != len(want) {
		t.Fatalf("Leases = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Leases = %v, want %v", got, want)
		}
	}
}

// TestCrashLoopNeverExhausts is the upstream bug: a container restarted
// 1000 times (release + allocate) in a /29 must always get an address.
func TestCrashLoopNeverExhausts(t *testing.T) {
	a := mustNew(t, "10.0.9.0/29", "10.0.9.1")
	a.Allocate("steady1")
	a.Allocate("steady2")
	for i := 0; i < 1000; i++ {
		if _, err := a.Allocate("crashy"); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if _, err := a.Allocate("crashy2"); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		a.Release("crashy")
		a.Release("crashy2")
	}
	if a.Len() != 2 {
		t.Fatalf("Len = %d, want 2", a.Len())
	}
	// and the pool can still be filled completely.
	for i := 0; i < a.Capacity()-2; i++ {
		if _, err := a.Allocate("fill" + strconv.Itoa(i)); err != nil {
			t.Fatalf("fill %d: %v", i, err)
		}
	}
	if _, err := a.Allocate("over"); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("over capacity: %v", err)
	}
}

func TestMAC(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"10.0.5.2", "02:00:0a:00:05:02"},
		{"192.168.255.1", "02:00:c0:a8:ff:01"},
		{"0.0.0.0", "02:00:00:00:00:00"},
	}
	for _, tt := range tests {
		if got := MAC(netip.MustParseAddr(tt.ip)).String(); got != tt.want {
			t.Errorf("MAC(%s) = %s, want %s", tt.ip, got, tt.want)
		}
	}
	if MAC(netip.MustParseAddr("::1")) != nil {
		t.Error("MAC(::1) != nil")
	}
}

// TestRandomOps runs a seeded random sequence of allocate/reserve/release
// operations across owners and checks the invariants after every one.
func TestRandomOps(t *testing.T) {
	const ops = 200_000
	for _, subnet := range []string{"10.1.0.0/26", "10.2.0.0/29", "10.3.0.0/22"} {
		t.Run(subnet, func(t *testing.T) {
			pfx := netip.MustParsePrefix(subnet)
			gw := pfx.Addr().Next().Next().Next() // not the first host, to exercise skipping
			a, err := New(pfx, gw)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewSource(int64(pfx.Bits())))
			nOwners := a.Capacity() + a.Capacity()/2 // more owners than addresses
			model := map[string]netip.Addr{}         // what each owner should hold
			hosts := hostsOf(pfx)
			for i := 0; i < ops; i++ {
				owner := "c" + strconv.Itoa(rng.Intn(nOwners))
				switch r := rng.Intn(10); {
				case r < 5:
					ip, err := a.Allocate(owner)
					if prev, ok := model[owner]; ok {
						if err != nil || ip != prev {
							t.Fatalf("op %d: sticky Allocate(%s) = %v, %v; want %v", i, owner, ip, err, prev)
						}
					} else if len(model) == a.Capacity() {
						if !errors.Is(err, ErrPoolExhausted) {
							t.Fatalf("op %d: full pool Allocate = %v, %v", i, ip, err)
						}
					} else if err != nil {
						t.Fatalf("op %d: Allocate(%s) with %d free: %v", i, owner, a.Capacity()-len(model), err)
					} else {
						model[owner] = ip
					}
				case r < 7:
					ip := hosts[rng.Intn(len(hosts))]
					err := a.Reserve(owner, ip)
					holder := ""
					for o, h := range model {
						if h == ip {
							holder = o
						}
					}
					switch {
					case ip == gw:
						if !errors.Is(err, ErrNotLeasable) {
							t.Fatalf("op %d: Reserve(gateway) err = %v", i, err)
						}
					case holder != "" && holder != owner:
						if !errors.Is(err, ErrAddressInUse) {
							t.Fatalf("op %d: Reserve(%s) held by %s: err = %v", i, ip, holder, err)
						}
					case err != nil:
						t.Fatalf("op %d: Reserve(%s, %s): %v", i, owner, ip, err)
					default:
						model[owner] = ip
					}
				default:
					a.Release(owner)
					delete(model, owner)
				}
				if i%97 == 0 || i == ops-1 {
					checkInvariants(t, a, model, gw)
				}
			}
			// Exhaust, release one, and exactly that one comes back.
			for j := 0; len(model) < a.Capacity(); j++ {
				o := "fill" + strconv.Itoa(j)
				ip, err := a.Allocate(o)
				if err != nil {
					t.Fatalf("fill: %v", err)
				}
				model[o] = ip
			}
			if _, err := a.Allocate("one-too-many"); !errors.Is(err, ErrPoolExhausted) {
				t.Fatalf("exhausted pool: %v", err)
			}
			for o, ip := range model {
				a.Release(o)
				delete(model, o)
				got, err := a.Allocate("newcomer")
				if err != nil || got != ip {
					t.Fatalf("after releasing %s (%v): Allocate = %v, %v", o, ip, got, err)
				}
				break
			}
		})
	}
}

func checkInvariants(t *testing.T, a *Allocator, model map[string]netip.Addr, gw netip.Addr) {
	t.Helper()
	ls := a.Leases()
	if len(ls) != len(model) || a.Len() != len(model) {
		t.Fatalf("%d leases (Len %d), want %d: leak or loss", len(ls), a.Len(), len(model))
	}
	seen := map[netip.Addr]bool{}
	for _, l := range ls {
		if seen[l.Addr] {
			t.Fatalf("duplicate address %v", l.Addr)
		}
		seen[l.Addr] = true
		if l.Addr == gw || l.Addr == a.Subnet().Addr() || l.Addr == broadcast(a.Subnet()) || !a.Subnet().Contains(l.Addr) {
			t.Fatalf("lease %v is not leasable", l)
		}
		if model[l.Owner] != l.Addr {
			t.Fatalf("lease %v, model says %v", l, model[l.Owner])
		}
	}
}

func hostsOf(p netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for ip := p.Addr().Next(); p.Contains(ip) && ip != broadcast(p); ip = ip.Next() {
		out = append(out, ip)
	}
	return out
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

var owners60k = func() []string {
	o := make([]string, 60_000)
	for i := range o {
		o[i] = "container-" + strconv.Itoa(i)
	}
	return o
}()

// BenchmarkAllocate60k measures one Allocate in a /16 holding about 60 000
// leases: untimed, a batch of 1000 leases is released; timed, the batch is
// allocated again, so the cost includes reuse of released addresses.
func BenchmarkAllocate60k(b *testing.B) {
	a := full60k(b)
	const batch = 1000
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 {
			b.StopTimer()
			for j := i; j < i+batch; j++ {
				a.Release(owners60k[j%len(owners60k)])
			}
			b.StartTimer()
		}
		if _, err := a.Allocate(owners60k[i%len(owners60k)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelease60k measures one Release in a /16 holding about 60 000
// leases: timed, a batch of 1000 is released; untimed, it is allocated again.
func BenchmarkRelease60k(b *testing.B) {
	a := full60k(b)
	const batch = 1000
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 && i > 0 {
			b.StopTimer()
			for j := i - batch; j < i; j++ {
				if _, err := a.Allocate(owners60k[j%len(owners60k)]); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
		a.Release(owners60k[i%len(owners60k)])
	}
}

// BenchmarkFill60k measures filling an empty /16 with 60 000 leases, per lease.
func BenchmarkFill60k(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		a := mustNew(b, "10.20.0.0/16", "10.20.0.1")
		b.StartTimer()
		for _, o := range owners60k {
			if _, err := a.Allocate(o); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(owners60k)), "ns/lease")
}

func full60k(b *testing.B) *Allocator {
	a := mustNew(b, "10.20.0.0/16", "10.20.0.1")
	for _, o := range owners60k {
		if _, err := a.Allocate(o); err != nil {
			b.Fatal(err)
		}
	}
	return a
}
