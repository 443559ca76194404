package nat

import (
	"errors"
	"net/netip"
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
