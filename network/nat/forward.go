package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ForwardChain is the chain, in the nat table and in the filter table, that
// holds the kernel path of the device's tcp ingress rules (Forwards). It is
// pantavisor's alone: made with the first forward, jumped to from nat
// PREROUTING and filter FORWARD, flushed when a process first uses it (a
// supervisor that died left its forwards behind) and deleted with its jumps
// when the last forward goes.
const ForwardChain = "PV-INGRESS"

// ErrNoForwarding means ip_forward is off in the namespace: a DNATed
// packet would be dropped instead of reaching the backend, while the
// listener on the device still answers. Forwards never turns forwarding on
// for the device: a NAT pool does, or the system.
var ErrNoForwarding = errors.New("ip_forward is off")

// Forward is one tcp ingress rule forwarded in the kernel, as Docker does
// without its userland proxy: connections arriving from outside the device
// to Listen are rewritten (DNAT in nat PREROUTING) to To and forwarded,
// never seen by pantavisor. Connections made on the device itself go
// through OUTPUT, not PREROUTING, and still reach the listener.
type Forward struct {
	// Listen is the listen address; an unspecified address (0.0.0.0)
	// means every address of the device, as the listener binds it.
	Listen netip.AddrPort
	// To is the backend: the provider's pool address and its export's
	// port.
	To netip.AddrPort
	// Local are interfaces whose clients are containers of the device
	// (the pools' bridges): their connections stay with the listener. A
	// container on the backend's bridge would get the replies straight
	// from the backend's address, not from the one it called, and one on
	// another pool's bridge would cross the pools' isolation.
	Local []string
}

// String is "listen → to", for logs and errors.
func (f Forward) String() string { return f.Listen.String() + " → " + f.To.String() }

func (f Forward) check() error {
	if !f.Listen.IsValid() || !f.Listen.Addr().Is4() || f.Listen.Port() == 0 ||
		!f.To.IsValid() || !f.To.Addr().Is4() || f.To.Addr().IsUnspecified() || f.To.Port() == 0 {
		return fmt.Errorf("forward %s: IPv4 listen and backend addresses with ports: %w", f, ErrInvalid)
	}
	for _, l := range f.Local {
		if l == "" || strings.ContainsAny(l, " !") {
			return fmt.Errorf("forward %s: local interface %q: %w", f, l, ErrInvalid)
		}
	}
	return nil
}

// PlanForward returns f's two rules in ForwardChain: the DNAT of new
// connections to Listen (nat), and the ACCEPT of both directions of
// exactly the connections that DNAT made (filter, matched on their
// conntrack tuples, so a FORWARD policy of DROP or the pools' isolation
// lets them through and nothing else).
func PlanForward(f Forward) (dnat, accept Rule) {
	lport := strconv.Itoa(int(f.Listen.Port()))
	dnat = Rule{Table: "nat", Chain: ForwardChain, Spec: []string{"-p", "tcp"}}
	accept = Rule{Table: "filter", Chain: ForwardChain, Spec: []string{"-m", "conntrack", "--ctstate", "DNAT", "--ctproto", "tcp"}}
	if a := f.Listen.Addr(); a.IsUnspecified() {
		// Every local address, as the listener's bind, and only those:
		// traffic routed through the device to another host is not ours.
		dnat.Spec = append(dnat.Spec, "-m", "addrtype", "--dst-type", "LOCAL")
	} else {
		dnat.Spec = append(dnat.Spec, "-d", a.String()+"/32")
		accept.Spec = append(accept.Spec, "--ctorigdst", a.String()+"/32")
	}
	dnat.Spec = append(dnat.Spec, "--dport", lport, "-j", "DNAT", "--to-destination", f.To.String())
	accept.Spec = append(accept.Spec, "--ctorigdstport", lport,
		"--ctreplsrc", f.To.Addr().String()+"/32", "--ctreplsrcport", strconv.Itoa(int(f.To.Port())), "-j", "ACCEPT")
	return dnat, accept
}

// localRule sends connections arriving on a local interface back to
// PREROUTING's other rules: they reach the listener.
func localRule(iface string) Rule {
	return Rule{Table: "nat", Chain: ForwardChain, Top: true, Spec: []string{"-i", iface, "-j", "RETURN"}}
}

// jumps are the rules that lead into ForwardChain. FORWARD's is first, so
// that the accept comes before a DROP appended by the system; PREROUTING's
// last, after whatever the system put there.
var jumps = []Rule{
	{Table: "nat", Chain: "PREROUTING", Spec: []string{"-j", ForwardChain}},
	{Table: "filter", Chain: "FORWARD", Top: true, Spec: []string{"-j", ForwardChain}},
}

// Forwards installs the kernel path of the device's tcp ingress rules in
// ForwardChain. It opens its iptables backend at the first Add, so a
// device without such rules never runs iptables for them. It is safe for
// concurrent use: listeners come and go from goroutines.
type Forwards struct {
	binary string
	// ipForward is read before each Add (a variable for tests).
	ipForward string

	mu    sync.Mutex
	b     *Backend
	n     int            // forwards installed
	local map[string]int // RETURN rules, by interface, and their users
}

// NewForwards returns forwards installed with the iptables binary given
// (DefaultBinary, LegacyBinary, NFTBinary or a path: the pools' own, never
// another backend in the same namespace).
func NewForwards(binary string) *Forwards {
	return &Forwards{binary: binary, ipForward: ipForward, local: map[string]int{}}
}

// Add installs f in the caller's network namespace and returns what
// removes it again. On failure nothing of f stays installed.
func (fs *Forwards) Add(f Forward) (remove func() error, err error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if v, err := os.ReadFile(fs.ipForward); err != nil {
		return nil, fmt.Errorf("forward %s: read ip_forward: %w", f, err)
	} else if strings.TrimSpace(string(v)) != "1" {
		return nil, fmt.Errorf("forward %s: %w", f, ErrNoForwarding)
	}
	if fs.b == nil {
		b, err := NewBackend(fs.binary)
		if err != nil {
			return nil, fmt.Errorf("forward %s: %w", f, err)
		}
		fs.b = b
	}
	if fs.n == 0 {
		if err := fs.setUp(); err != nil {
			return nil, fmt.Errorf("forward %s: %w", f, errors.Join(err, fs.tearDown()))
		}
	}
	local := slices.Compact(slices.Sorted(slices.Values(f.Local)))
	dnat, accept := PlanForward(f)
	var done []Rule
	fail := func(err error) (func() error, error) {
		errs := []error{err}
		for i := len(done) - 1; i >= 0; i-- {
			errs = append(errs, fs.delete(done[i]))
		}
		for _, l := range local {
			errs = append(errs, fs.unuse(l))
		}
		if fs.n == 0 {
			errs = append(errs, fs.tearDown())
		}
		return nil, fmt.Errorf("forward %s: %w", f, errors.Join(errs...))
	}
	for i, l := range local {
		if err := fs.use(l); err != nil {
			local = local[:i]
			return fail(err)
		}
	}
	// The accept before the DNAT: the first DNATed packet must already be
	// let through.
	for _, r := range []Rule{accept, dnat} {
		if err := fs.insert(r); err != nil {
			return fail(err)
		}
		done = append(done, r)
	}
	fs.n++
	// Removed once its rules are gone: a removal whose delete failed is
	// made again by the next call, instead of being forgotten with its
	// DNAT still in the chain.
	var mu sync.Mutex
	var gone bool
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		if gone {
			return nil
		}
		if err := fs.removeRules(f, dnat, accept); err != nil {
			return err
		}
		gone = true
		return fs.release(f, local)
	}, nil
}

// Connections is how many connections f's DNAT rule has rewritten since
// Add installed it. The nat table sees only the first packet of a
// connection, so the rule's packet counter counts connections. It lists
// the chain once (iptables -v -S), without holding up Add.
func (fs *Forwards) Connections(f Forward) (uint64, error) {
	fs.mu.Lock()
	b := fs.b
	fs.mu.Unlock()
	if b == nil {
		return 0, fmt.Errorf("count forward %s: none installed", f)
	}
	lines, err := b.ipt.ListWithCounters("nat", ForwardChain)
	if err != nil {
		return 0, fmt.Errorf("count forward %s: %w", f, err)
	}
	for _, l := range lines {
		if n, ok := dnatCount(l, f); ok {
			return n, nil
		}
	}
	return 0, fmt.Errorf("count forward %s: its DNAT rule is not in %s", f, ForwardChain)
}

// dnatCount reads the packet counter of line (as iptables -v -S prints a
// rule: "... -c PKTS BYTES ...") when line is f's DNAT rule. The rule is
// told by what PlanForward puts in it, in whatever order and with whatever
// implicit matches ("-m tcp") the listing adds.
func dnatCount(line string, f Forward) (uint64, bool) {
	fields := strings.Fields(line)
	has := func(k, v string) bool {
		for i := 0; i+1 < len(fields); i++ {
			if fields[i] == k && fields[i+1] == v {
				return true
			}
		}
		return false
	}
	if len(fields) < 2 || fields[0] != "-A" || fields[1] != ForwardChain || !has("-j", "DNAT") ||
		!has("--to-destination", f.To.String()) || !has("--dport", strconv.Itoa(int(f.Listen.Port()))) {
		return 0, false
	}
	if a := f.Listen.Addr(); a.IsUnspecified() {
		if !has("--dst-type", "LOCAL") || slices.Contains(fields, "-d") {
			return 0, false
		}
	} else if !has("-d", a.String()+"/32") {
		return 0, false
	}
	i := slices.Index(fields, "-c")
	if i < 0 || i+1 >= len(fields) {
		return 0, false
	}
	n, err := strconv.ParseUint(fields[i+1], 10, 64)
	return n, err == nil
}

// Reset removes the chains and jumps a dead supervisor left, if there are
// any. A supervisor that re-adopts the device calls it before its
// listeners come up: Add flushes leftovers only when a forward is added,
// and one of the old supervisor's forwards must not outlive its rule (a
// rule the revision no longer has, or whose provider is away) by sending
// outside clients to an address that may now be another container's. It
// does nothing while forwards of this process are installed.
func (fs *Forwards) Reset() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.n > 0 {
		return nil
	}
	if fs.b == nil {
		b, err := NewBackend(fs.binary)
		if errors.Is(err, exec.ErrNotFound) {
			return nil // no iptables: nothing was ever forwarded
		}
		if err != nil {
			return fmt.Errorf("reset forwards: %w", err)
		}
		fs.b = b
	}
	if err := fs.tearDown(); err != nil {
		return fmt.Errorf("reset forwards: %w", err)
	}
	return nil
}

// removeRules deletes one forward's rules, the DNAT first so that no new
// connection is rewritten to a backend whose accept is gone. Deleting a
// rule that is not there is no error, so it can be made again.
func (fs *Forwards) removeRules(f Forward, dnat, accept Rule) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err := fs.delete(dnat); err != nil {
		return fmt.Errorf("remove forward %s: %w", f, err)
	}
	if err := fs.delete(accept); err != nil {
		return fmt.Errorf("remove forward %s: %w", f, err)
	}
	return nil
}

// release gives up a removed forward's share of the local rules and of
// the chains: the last forward takes the chains and their jumps with it.
func (fs *Forwards) release(f Forward, local []string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var errs []error
	for _, l := range local {
		errs = append(errs, fs.unuse(l))
	}
	fs.n--
	if fs.n == 0 {
		errs = append(errs, fs.tearDown())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove forward %s: %w", f, err)
	}
	return nil
}

// setUp makes the chains, empty, and their jumps. Flushing is right: with
// no forward of this process installed, what is in them is a dead
// supervisor's.
func (fs *Forwards) setUp() error {
	for _, table := range []string{"nat", "filter"} {
		if err := fs.b.ipt.ClearChain(table, ForwardChain); err != nil {
			return fmt.Errorf("make chain %s %s: %w", table, ForwardChain, err)
		}
	}
	clear(fs.local)
	for _, j := range jumps {
		if err := fs.insert(j); err != nil {
			return err
		}
	}
	return nil
}

// tearDown removes the jumps and the chains, those that exist: a set-up
// that failed half-way is torn down too.
func (fs *Forwards) tearDown() error {
	var errs []error
	for _, j := range jumps {
		ok, err := fs.b.ipt.ChainExists(j.Table, ForwardChain)
		if err == nil && ok {
			if err = fs.delete(j); err == nil {
				err = fs.b.ipt.ClearAndDeleteChain(j.Table, ForwardChain)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("delete chain %s %s: %w", j.Table, ForwardChain, err))
		}
	}
	clear(fs.local)
	return errors.Join(errs...)
}

// use counts one more user of iface's RETURN rule, adding it for the
// first.
func (fs *Forwards) use(iface string) error {
	if fs.local[iface] == 0 {
		if err := fs.insert(localRule(iface)); err != nil {
			return err
		}
	}
	fs.local[iface]++
	return nil
}

// unuse counts one user less, removing the rule with the last.
func (fs *Forwards) unuse(iface string) error {
	if fs.local[iface] == 0 {
		return nil
	}
	fs.local[iface]--
	if fs.local[iface] > 0 {
		return nil
	}
	delete(fs.local, iface)
	return fs.delete(localRule(iface))
}

// insert adds r unless it is there already (a jump the system made the
// same would be taken as ours; that is harmless, it jumps to our chain).
func (fs *Forwards) insert(r Rule) error {
	ok, err := fs.b.ipt.Exists(r.Table, r.Chain, r.Spec...)
	if err != nil {
		return fmt.Errorf("check %s: %w", r, err)
	}
	if ok {
		return nil
	}
	if r.Top {
		err = fs.b.ipt.Insert(r.Table, r.Chain, 1, r.Spec...)
	} else {
		err = fs.b.ipt.Append(r.Table, r.Chain, r.Spec...)
	}
	if err != nil {
		return fmt.Errorf("add %s: %w", r, err)
	}
	return nil
}

func (fs *Forwards) delete(r Rule) error {
	if err := fs.b.ipt.DeleteIfExists(r.Table, r.Chain, r.Spec...); err != nil {
		return fmt.Errorf("delete %s: %w", r, err)
	}
	return nil
}
