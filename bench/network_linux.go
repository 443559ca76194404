package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/state"
)

// netInitLines make the container of the network figures: the minimal
// container of the start→exit figures, but with a network namespace of
// its own (net is not kept), as a container in an IPAM pool has. Both
// sides of the comparison get the new namespace; only the lease differs.
var netInitLines = []string{
	"lxc.namespace.keep = user ipc",
	"lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}

// The bench pool lives in pvbench's own network namespace (make bench runs
// it under unshare --net): the bridge, the veths and the addresses die
// with it, and no packet is sent anywhere.
var (
	benchPool = state.Pool{
		Name: "pvbench", Type: state.PoolBridge, Bridge: "pvbench0",
		Subnet: netip.MustParsePrefix("10.213.0.0/24"), Gateway: netip.MustParseAddr("10.213.0.1"),
	}
	benchLease = &messages.Lease{
		Pool: benchPool.Name, Type: string(state.PoolBridge), Link: benchPool.Bridge,
		Addr: netip.MustParsePrefix("10.213.0.2/24"), Gateway: benchPool.Gateway, MAC: "02:42:0a:d5:00:02",
	}
)

func init() {
	Register(Figure{
		Name:     "container start→exit of /bin/true with an IPAM lease (engine Start(lease) + Wait + Destroy, mount kept; own netns, veth on a bridge, address, route)",
		Baseline: "same container and netns without a lease (engine Start(nil) + Wait + Destroy, mount kept)",
		Unit:     "ms",
		Needs:    containerNeeds("exec:iptables"),
		Run: func() (float64, float64, error) {
			r, err := netStarts(true)
			return r.cycleWith, r.cycleWithout, err
		},
	})
	// The network's share of a start, each side timed by itself: the
	// difference of two start times it replaces was smaller than their
	// noise and came out negative in some runs.
	Register(Figure{
		Name:     attachName,
		Baseline: "container Create+Run without network, own netns (engine Mount.Start(nil))",
		Unit:     "ms",
		Needs:    containerNeeds("exec:iptables"),
		Run:      attachVsStart,
	})
	// The same kernel work done with the standard tool, in the fewest
	// processes it allows (a script would use more): what doing it in
	// process, over netlink, saves. Upstream's LXC does it in C over
	// netlink, inside lxc-start, where it cannot be timed alone.
	Register(Figure{
		Name:     attachName,
		Baseline: "iproute2, same steps: ip link add … type veth peer … netns, then nsenter --net … ip -batch (address, up, lo up, route); 2 processes",
		Unit:     "ms",
		Needs:    []string{"root", "pid1", "exec:iptables", "exec:ip", "exec:nsenter"},
		Run:      attachVsIproute2,
	})
}

// netResult holds the medians of one run, in ms: whole start→exit cycles
// and their Start calls alone, with and without a lease (with: 0 when the
// run had no block with a lease).
type netResult struct {
	cycleWith, cycleWithout float64
	startWith, startWithout float64
}

var netRuns int

// withPool sets up the bench pool through engine.Pools, as the pool actor
// does (the bridge with the gateway address, the pool's iptables rules),
// runs fn and tears the pool down.
func withPool(fn func() error) (err error) {
	pool, err := (&engine.Pools{}).Setup(benchPool, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, pool.Teardown()) }()
	logf("pool: %s", pool.Describe())
	return fn()
}

// netStarts mounts one container once and times startsPerRun
// Start→Wait→Destroy cycles without a lease and, with withLease, as many
// with the bench lease, in blocks whose order alternates from run to run.
func netStarts(withLease bool) (res netResult, err error) {
	f, err := newFixture()
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, f.close()) }()
	ef, err := newEngineFixture(f, "net", []benchCtr{{name: "n", cmd: "/bin/true", lxc: netInitLines}})
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, ef.cleanup()) }()
	err = withPool(func() (err error) {
		m, err := ef.eng.Mount(ef.st.Containers[0])
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, m.Unmount()) }()
		res, err = netCycles(m, withLease)
		return err
	})
	return res, err
}

func netCycles(m *engine.Mount, withLease bool) (res netResult, err error) {
	var cw, cwo, sw, swo []time.Duration
	once := func(lease *messages.Lease, cycles, starts *[]time.Duration) error {
		t0 := time.Now()
		r, err := m.Start(lease)
		if err != nil {
			return err
		}
		started := time.Since(t0)
		ex := r.Wait()
		if err := r.Destroy(); err != nil {
			return err
		}
		el := time.Since(t0)
		if ex.Code != 0 || ex.Signal != 0 {
			return fmt.Errorf("/bin/true ended with %+v", ex)
		}
		if cycles != nil {
			*cycles = append(*cycles, el)
			*starts = append(*starts, started)
		}
		return nil
	}
	block := func(lease *messages.Lease, cycles, starts *[]time.Duration) error {
		if err := once(lease, nil, nil); err != nil { // warm-up
			return err
		}
		for range startsPerRun {
			if err := once(lease, cycles, starts); err != nil {
				return err
			}
		}
		return nil
	}
	blocks := []func() error{func() error { return block(nil, &cwo, &swo) }}
	runs := new(int) // one side alone: nothing to alternate
	if withLease {
		blocks = append(blocks, func() error { return block(benchLease, &cw, &sw) })
		runs = &netRuns
	}
	if err := alternate(runs, blocks...); err != nil {
		return res, err
	}
	res = netResult{cycleWith: medianMs(cw), cycleWithout: medianMs(cwo), startWith: medianMs(sw), startWithout: medianMs(swo)}
	if withLease {
		logf("network: start→exit %.2f ms with lease, %.2f without; Start %.2f ms with, %.2f without",
			res.cycleWith, res.cycleWithout, res.startWith, res.startWithout)
	} else {
		logf("network: start→exit %.2f ms without lease; Start %.2f ms", res.cycleWithout, res.startWithout)
	}
	return res, nil
}
