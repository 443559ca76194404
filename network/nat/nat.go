// Package nat installs the packet-filter side of IPAM pools with
// go-iptables: MASQUERADE and forwarding for NAT pools, and DROP rules that
// isolate pools' bridges from each other. Each pool's Rules remembers every
// rule it added and Remove deletes exactly those, so the tables end as they
// were. Chain policies are never changed.
//
// Both iptables backends work: the iptables found in PATH (iptables-nft on
// Debian 12) or an explicit binary such as /usr/sbin/iptables-legacy. Only
// ever run this inside the network namespace it is meant for: even a read
// with iptables-legacy instantiates the legacy tables of the namespace it
// runs in.
package nat

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// Binaries for NewBackend.
const (
	// DefaultBinary is whatever "iptables" PATH finds.
	DefaultBinary = ""
	// LegacyBinary is the xtables (non-nft) backend.
	LegacyBinary = "iptables-legacy"
	// NFTBinary is the nf_tables backend.
	NFTBinary = "iptables-nft"
)

// ipForward is per network namespace: the namespace of the thread that
// opens it.
const ipForward = "/proc/sys/net/ipv4/ip_forward"

// ErrInvalid means a Config cannot be applied.
var ErrInvalid = errors.New("invalid rules config")

// Backend is one iptables binary.
type Backend struct {
	ipt *iptables.IPTables
	// Path is the resolved binary.
	Path string
	// Version is its first --version line, e.g. "iptables v1.8.9 (nf_tables)".
	Version string
	// Mode is "nf_tables" or "legacy".
	Mode string
}

// NewBackend runs binary --version (binary is DefaultBinary, LegacyBinary,
// NFTBinary or a path) and returns a backend using it. It touches no table.
func NewBackend(binary string) (*Backend, error) {
	var (
		ipt *iptables.IPTables
		err error
	)
	if binary == DefaultBinary {
		ipt, err = iptables.New()
	} else {
		ipt, err = iptables.New(iptables.Path(binary))
	}
	if err != nil {
		return nil, fmt.Errorf("open iptables %q: %w", binary, err)
	}
	b := &Backend{ipt: ipt}
	// go-iptables resolved the path; ask it the same way it did.
	path := binary
	if path == DefaultBinary {
		path = "iptables"
	}
	if b.Path, err = exec.LookPath(path); err != nil {
		return nil, fmt.Errorf("open iptables %q: %w", binary, err)
	}
	var out bytes.Buffer
	cmd := exec.Command(b.Path, "--version")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("open iptables %q: read version: %w", binary, err)
	}
	b.Version = strings.TrimSpace(strings.SplitN(out.String(), "\n", 2)[0])
	b.Mode = "legacy"
	if strings.Contains(b.Version, "nf_tables") {
		b.Mode = "nf_tables"
	}
	return b, nil
}

// String is the version line, for logs.
func (b *Backend) String() string { return b.Path + ": " + b.Version }

// Rule is one iptables rule: table, chain and rule specification.
type Rule struct {
	Table, Chain string
	Spec         []string
	// Top puts the rule first in its chain instead of last.
	Top bool
}

// String renders the rule as iptables -S prints it.
func (r Rule) String() string {
	return "-t " + r.Table + " -A " + r.Chain + " " + strings.Join(r.Spec, " ")
}

// Config is one pool's wishes.
type Config struct {
	// Pool names the pool in errors.
	Pool string
	// Bridge is the pool's bridge.
	Bridge string
	// Subnet is the pool's subnet.
	Subnet netip.Prefix
	// NAT enables ip_forward and masquerades the subnet's traffic leaving
	// through any other interface.
	NAT bool
	// Peers are the bridges of the other pools (they need not exist yet).
	// Traffic between Bridge and each of them is dropped in both directions
	// unless AllowInterPool is set.
	Peers []string
	// AllowInterPool turns pool isolation off.
	AllowInterPool bool
	// Adopt: the rules that exist already are this pool's, installed by
	// a previous supervisor of the device (it died; the pool's containers
	// run on), and Remove deletes them too.
	Adopt bool
}

// Rules is what Apply installed for one pool. It is not safe for concurrent
// use.
type Rules struct {
	b     *Backend
	cfg   Config
	added []Rule
	// ForwardWas is ip_forward before Apply set it ("" when NAT is off).
	ForwardWas string
}

// Plan returns the rules Apply installs for cfg, in order:
//   - for each peer, unless AllowInterPool: filter FORWARD -i Bridge -o peer
//     -j DROP and the reverse, first in the chain, ahead of any ACCEPT;
//   - filter FORWARD -i Bridge -o Bridge -j ACCEPT, so container-to-container
//     traffic on the bridge survives a DROP policy when bridged frames go
//     through iptables (br_netfilter);
//   - with NAT: nat POSTROUTING -s Subnet ! -o Bridge -j MASQUERADE, and
//     filter FORWARD -i Bridge ! -o Bridge -j ACCEPT plus -o Bridge -m
//     conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT, so NATed traffic
//     and its replies flow when the FORWARD policy is DROP.
func Plan(cfg Config) []Rule {
	br := cfg.Bridge
	var rs []Rule
	if !cfg.AllowInterPool {
		for _, p := range cfg.Peers {
			if p == br || p == "" {
				continue
			}
			rs = append(rs,
				Rule{Table: "filter", Chain: "FORWARD", Top: true, Spec: []string{"-i", br, "-o", p, "-j", "DROP"}},
				Rule{Table: "filter", Chain: "FORWARD", Top: true, Spec: []string{"-i", p, "-o", br, "-j", "DROP"}},
			)
		}
	}
	rs = append(rs, Rule{Table: "filter", Chain: "FORWARD", Spec: []string{"-i", br, "-o", br, "-j", "ACCEPT"}})
	if cfg.NAT {
		rs = append(rs,
			Rule{Table: "nat", Chain: "POSTROUTING", Spec: []string{"-s", cfg.Subnet.String(), "!", "-o", br, "-j", "MASQUERADE"}},
			Rule{Table: "filter", Chain: "FORWARD", Spec: []string{"-i", br, "!", "-o", br, "-j", "ACCEPT"}},
			Rule{Table: "filter", Chain: "FORWARD", Spec: []string{"-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"}},
		)
	}
	return rs
}

// Apply installs Plan(cfg) with backend b, skipping rules that already
// exist (they are not ours and Remove leaves them), and with NAT writes 1 to
// ip_forward in the caller's network namespace. If a rule fails, the rules
// it added are removed again and the error names the pool and the rule.
func Apply(b *Backend, cfg Config) (*Rules, error) {
	if cfg.Bridge == "" || !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
		return nil, fmt.Errorf("apply rules for pool %s: bridge %q subnet %v: %w", cfg.Pool, cfg.Bridge, cfg.Subnet, ErrInvalid)
	}
	for _, name := range append([]string{cfg.Bridge}, cfg.Peers...) {
		if !literalIfName(name) {
			return nil, fmt.Errorf("apply rules for pool %s: interface %q is not one name to iptables (a final '+' matches every name it begins, \"!\" negates): %w", cfg.Pool, name, ErrInvalid)
		}
	}
	cfg.Subnet = cfg.Subnet.Masked()
	r := &Rules{b: b, cfg: cfg}
	if cfg.NAT {
		was, err := os.ReadFile(ipForward)
		if err != nil {
			return nil, fmt.Errorf("apply rules for pool %s: read ip_forward: %w", cfg.Pool, err)
		}
		r.ForwardWas = strings.TrimSpace(string(was))
		if r.ForwardWas != "1" {
			if err := os.WriteFile(ipForward, []byte("1\n"), 0o644); err != nil {
				return nil, fmt.Errorf("apply rules for pool %s: enable ip_forward: %w", cfg.Pool, err)
			}
		}
	}
	plan := Plan(cfg)
	var listed map[string]bool
	if cfg.Adopt {
		listed = listChains(b, plan)
	}
	for _, rule := range plan {
		if err := r.add(rule, listed); err != nil {
			err = fmt.Errorf("apply rules for pool %s: %s: %w", cfg.Pool, rule, err)
			if rerr := r.Remove(); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return nil, err
		}
	}
	return r, nil
}

// literalIfName says whether iptables reads name in -i and -o as that one
// interface: a final '+' makes it a wildcard, and a lone "!" negates the
// match. The kernel allows both in a name, and a rule on such a "bridge"
// would accept or drop the traffic of the host's own interfaces.
func literalIfName(name string) bool {
	return !strings.HasSuffix(name, "+") && name != "!"
}

// listChains lists every chain of plan once (iptables -S) and returns the
// rules found, in Rule.String's form: a rule found there, as iptables
// prints it, exists without a check of its own. A
// re-adopting supervisor answers nothing until every pool is taken over,
// and one iptables run per rule was most of that wait. A chain that cannot
// be listed is left out: its rules are checked one by one.
func listChains(b *Backend, plan []Rule) map[string]bool {
	listed := map[string]bool{}
	done := map[string]bool{}
	for _, rule := range plan {
		key := rule.Table + " " + rule.Chain
		if done[key] {
			continue
		}
		done[key] = true
		lines, err := b.ipt.List(rule.Table, rule.Chain)
		if err != nil {
			continue
		}
		for _, l := range lines {
			listed["-t "+rule.Table+" "+l] = true
		}
	}
	return listed
}

// add installs rule unless it exists; listed (listChains, when adopting)
// names rules known to exist without a check.
func (r *Rules) add(rule Rule, listed map[string]bool) error {
	if listed[rule.String()] {
		r.added = append(r.added, rule) // adopting: it is this pool's
		return nil
	}
	ok, err := r.b.ipt.Exists(rule.Table, rule.Chain, rule.Spec...)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if ok {
		if r.cfg.Adopt {
			r.added = append(r.added, rule)
		}
		return nil
	}
	if rule.Top {
		err = r.b.ipt.Insert(rule.Table, rule.Chain, 1, rule.Spec...)
	} else {
		err = r.b.ipt.Append(rule.Table, rule.Chain, rule.Spec...)
	}
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	r.added = append(r.added, rule)
	return nil
}

// Added returns the rules this pool installed and still owns.
func (r *Rules) Added() []Rule { return append([]Rule(nil), r.added...) }

// Remove deletes every rule this pool added, newest first, even past
// failures (it reports them all; the rules it could not delete stay owned
// and a later Remove retries them). ip_forward is left as it is: another
// pool or the system may rely on it.
func (r *Rules) Remove() error {
	var errs []error
	var kept []Rule
	for i := len(r.added) - 1; i >= 0; i-- {
		rule := r.added[i]
		if err := r.b.ipt.DeleteIfExists(rule.Table, rule.Chain, rule.Spec...); err != nil {
			errs = append(errs, fmt.Errorf("remove rules for pool %s: %s: %w", r.cfg.Pool, rule, err))
			kept = append([]Rule{rule}, kept...)
		}
	}
	r.added = kept
	return errors.Join(errs...)
}
