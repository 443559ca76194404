package nat

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestPlan(t *testing.T) {
	sub := netip.MustParsePrefix("10.0.5.0/24")
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"plain pool", Config{Bridge: "pvbr0", Subnet: sub}, []string{
			"-t filter -A FORWARD -i pvbr0 -o pvbr0 -j ACCEPT",
		}},
		{"nat pool", Config{Bridge: "pvbr0", Subnet: sub, NAT: true}, []string{
			"-t filter -A FORWARD -i pvbr0 -o pvbr0 -j ACCEPT",
			"-t nat -A POSTROUTING -s 10.0.5.0/24 ! -o pvbr0 -j MASQUERADE",
			"-t filter -A FORWARD -i pvbr0 ! -o pvbr0 -j ACCEPT",
			"-t filter -A FORWARD -o pvbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		}},
		{"isolated from two peers", Config{Bridge: "pvbr0", Subnet: sub, Peers: []string{"pvbr1", "pvbr0", "", "pvbr2"}}, []string{
			"-t filter -A FORWARD -i pvbr0 -o pvbr1 -j DROP",
			"-t filter -A FORWARD -i pvbr1 -o pvbr0 -j DROP",
			"-t filter -A FORWARD -i pvbr0 -o pvbr2 -j DROP",
			"-t filter -A FORWARD -i pvbr2 -o pvbr0 -j DROP",
			"-t filter -A FORWARD -i pvbr0 -o pvbr0 -j ACCEPT",
		}},
		{"isolation off", Config{Bridge: "pvbr0", Subnet: sub, Peers: []string{"pvbr1"}, AllowInterPool: true}, []string{
			"-t filter -A FORWARD -i pvbr0 -o pvbr0 -j ACCEPT",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range Plan(tt.cfg) {
				got = append(got, r.String())
				if r.Top != (r.Spec[len(r.Spec)-1] == "DROP") {
					t.Errorf("%s: Top = %v; DROP rules go first, others last", r, r.Top)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Plan =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestApplyInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no bridge", Config{Pool: "p", Subnet: netip.MustParsePrefix("10.0.0.0/24")}},
		{"no subnet", Config{Pool: "p", Bridge: "pvbr0"}},
		{"ipv6 subnet", Config{Pool: "p", Bridge: "pvbr0", Subnet: netip.MustParsePrefix("fd00::/64")}},
		// iptables would read these as more than the one interface.
		{"wildcard bridge", Config{Pool: "p", Bridge: "eth+", Subnet: netip.MustParsePrefix("10.0.0.0/24")}},
		{"wildcard peer", Config{Pool: "p", Bridge: "pvbr0", Peers: []string{"+"}, Subnet: netip.MustParsePrefix("10.0.0.0/24")}},
		{"negation bridge", Config{Pool: "p", Bridge: "!", Subnet: netip.MustParsePrefix("10.0.0.0/24")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A nil backend proves nothing runs before validation.
			if _, err := Apply(nil, tt.cfg); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestPlanForward(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name         string
		f            Forward
		dnat, accept string
	}{
		{"every local address", Forward{Listen: ap("0.0.0.0:9080"), To: ap("10.0.5.13:80")},
			"-t nat -A PV-INGRESS -p tcp -m addrtype --dst-type LOCAL --dport 9080 -j DNAT --to-destination 10.0.5.13:80",
			"-t filter -A PV-INGRESS -m conntrack --ctstate DNAT --ctproto tcp --ctorigdstport 9080 --ctreplsrc 10.0.5.13/32 --ctreplsrcport 80 -j ACCEPT"},
		{"one address", Forward{Listen: ap("192.168.1.7:443"), To: ap("10.0.5.13:8443")},
			"-t nat -A PV-INGRESS -p tcp -d 192.168.1.7/32 --dport 443 -j DNAT --to-destination 10.0.5.13:8443",
			"-t filter -A PV-INGRESS -m conntrack --ctstate DNAT --ctproto tcp --ctorigdst 192.168.1.7/32 --ctorigdstport 443 --ctreplsrc 10.0.5.13/32 --ctreplsrcport 8443 -j ACCEPT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dnat, accept := PlanForward(tt.f)
			if dnat.String() != tt.dnat || accept.String() != tt.accept {
				t.Errorf("PlanForward =\n%s\n%s\nwant\n%s\n%s", dnat, accept, tt.dnat, tt.accept)
			}
		})
	}
	if r := localRule("pvbr0"); r.String() != "-t nat -A PV-INGRESS -i pvbr0 -j RETURN" || !r.Top {
		t.Errorf("localRule = %s (top %v)", r, r.Top)
	}
}

func TestForwardInvalid(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name string
		f    Forward
	}{
		{"no backend", Forward{Listen: ap("0.0.0.0:9080")}},
		{"backend without port", Forward{Listen: ap("0.0.0.0:9080"), To: ap("10.0.5.13:0")}},
		{"unspecified backend", Forward{Listen: ap("0.0.0.0:9080"), To: ap("0.0.0.0:80")}},
		{"ipv6", Forward{Listen: ap("[::]:9080"), To: ap("10.0.5.13:80")}},
		{"listen without port", Forward{Listen: ap("0.0.0.0:0"), To: ap("10.0.5.13:80")}},
		{"bad interface", Forward{Listen: ap("0.0.0.0:9080"), To: ap("10.0.5.13:80"), Local: []string{"! pvbr0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No backend binary exists by that name: nothing runs before
			// validation.
			if _, err := NewForwards("/nonexistent/iptables").Add(tt.f); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

// Forwarding off: no rule is made, whatever the backend.
func TestForwardNeedsIPForward(t *testing.T) {
	off := filepath.Join(t.TempDir(), "ip_forward")
	if err := os.WriteFile(off, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := NewForwards("/nonexistent/iptables")
	fs.ipForward = off
	_, err := fs.Add(Forward{Listen: netip.MustParseAddrPort("0.0.0.0:9080"), To: netip.MustParseAddrPort("10.0.5.13:80")})
	if !errors.Is(err, ErrNoForwarding) {
		t.Fatalf("err = %v, want ErrNoForwarding", err)
	}
}

// TestDNATCount tells a forward's DNAT rule among the lines iptables -v -S
// prints, whatever the order and implicit matches, and reads its packets.
func TestDNATCount(t *testing.T) {
	all := Forward{Listen: netip.MustParseAddrPort("0.0.0.0:7000"), To: netip.MustParseAddrPort("10.90.1.10:9000")}
	one := Forward{Listen: netip.MustParseAddrPort("10.88.0.1:7001"), To: netip.MustParseAddrPort("10.90.2.10:9000")}
	lines := []string{
		"-N PV-INGRESS",
		"-A PV-INGRESS -i pvA -c 4 240 -j RETURN",
		"-A PV-INGRESS -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 7000 -c 12 720 -j DNAT --to-destination 10.90.1.10:9000",
		"-A PV-INGRESS -d 10.88.0.1/32 -p tcp -m tcp --dport 7001 -c 3 180 -j DNAT --to-destination 10.90.2.10:9000",
	}
	count := func(f Forward) (uint64, bool) {
		for _, l := range lines {
			if n, ok := dnatCount(l, f); ok {
				return n, true
			}
		}
		return 0, false
	}
	if n, ok := count(all); !ok || n != 12 {
		t.Errorf("0.0.0.0:7000: %d %v, want 12", n, ok)
	}
	if n, ok := count(one); !ok || n != 3 {
		t.Errorf("10.88.0.1:7001: %d %v, want 3", n, ok)
	}
	for _, f := range []Forward{
		{Listen: netip.MustParseAddrPort("0.0.0.0:7001"), To: one.To},                                   // not the addrtype rule
		{Listen: netip.MustParseAddrPort("10.88.0.1:7000"), To: all.To},                                 // not the -d rule
		{Listen: all.Listen, To: netip.MustParseAddrPort("10.90.1.11:9000")},                            // another backend
		{Listen: netip.MustParseAddrPort("0.0.0.0:9000"), To: netip.MustParseAddrPort("10.0.0.1:7000")}, // ports swapped
	} {
		if n, ok := count(f); ok {
			t.Errorf("%s matched a rule (%d)", f, n)
		}
	}
}
