package actors

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/network/ipam"
	"github.com/pantavisor/pv/state"
)

// A supervisor that PID 1 started again (the previous one crashed, or
// asked to be re-executed from a new binary) finds the device running:
// the containers of the previous one kept their processes, mounts,
// addresses, bridges and rules. Adopt takes all of it over in the shape
// of a handover (handover.go), as if the previous supervisor's revision
// had handed its records to this one: the revision actor adopts each
// record instead of starting the container, so nothing is restarted. A
// container whose init ended in the gap comes with its exit, which the
// revision's recovery then handles as any other exit.

// Adopter takes over what a previous supervisor left of one revision.
// Its methods block; Adopt calls them before the actor system starts.
type Adopter interface {
	// AdoptPool takes over a pool's bridge and rules.
	AdoptPool(p state.Pool, peers []string) (PoolSetup, error)
	// AdoptContainer takes over a container: nil mount when nothing is
	// left of it (it starts as at boot); a mount and no run when it was
	// mounted only, or when what was left could not be taken over (err
	// says why; it starts afresh on that mount).
	AdoptContainer(c *state.Container) (Mount, Run, *messages.Lease, error)
}

// Adoption is what Adopt took over, for Config.Adopted.
type Adoption struct {
	h *handover
	// Running, Ended and Fresh name the containers taken over with a live
	// init, with an init that ended in the gap, and those that start
	// afresh.
	Running, Ended, Fresh []string
}

// Adopt takes over what a previous supervisor left of st (see above),
// with the books it kept. Every failure is logged and leaves the container
// to a fresh start.
func Adopt(st *state.State, a Adopter, books Books, log *slog.Logger) *Adoption {
	ad := &Adoption{h: &handover{containers: map[string]*containerRecord{}, pools: map[string]*poolRecord{}, held: map[string]bool{}}}
	for name, b := range books {
		if b.Stopped {
			ad.h.held[name] = true // stopped through the API: it stays down
		}
	}
	now := time.Now()
	// Pools and containers are taken over side by side: a pool's rules
	// are iptables runs, and the control socket waits for all of it.
	type poolTaken struct {
		alloc *ipam.Allocator
		setup PoolSetup
		err   error
	}
	poolsTaken := make([]poolTaken, len(st.Pools))
	for i, p := range st.Pools {
		if alloc, err := ipam.New(p.Subnet, p.Gateway); err == nil {
			poolsTaken[i].alloc = alloc
		} // else validation refuses it; the pool actor reports it
	}
	taken := make([]takenItem, len(st.Containers))
	n := len(st.Pools)
	sideBySide(n+len(st.Containers), log, func(i int) {
		if i < n {
			if pt := &poolsTaken[i]; pt.alloc != nil {
				pt.setup, pt.err = a.AdoptPool(st.Pools[i], poolPeers(st, st.Pools[i]))
			}
			return
		}
		r := &taken[i-n]
		r.mount, r.run, r.lease, r.err = a.AdoptContainer(st.Containers[i-n])
	}, func(i int, panicked error) {
		if i < n {
			poolsTaken[i].setup, poolsTaken[i].err = nil, panicked
			return
		}
		taken[i-n] = takenItem{err: panicked}
	})
	pools := map[string]*poolRecord{}
	for i, p := range st.Pools {
		pt := poolsTaken[i]
		if pt.alloc == nil {
			continue
		}
		rec := &poolRecord{alloc: pt.alloc, ready: true, since: now}
		if pt.err != nil {
			log.Error("pool not re-adopted", "pool", p.Name, "err", pt.err)
			rec.err = pt.err
		} else {
			rec.setup = pt.setup
		}
		pools[p.Name] = rec
		ad.h.pools[p.Name] = rec
	}
	for i, c := range st.Containers {
		mount, run, lease, err := taken[i].mount, taken[i].run, taken[i].lease, taken[i].err
		if err != nil {
			log.Warn("container not re-adopted: starting it afresh", "container", c.Name, "err", err)
		}
		if mount == nil {
			ad.Fresh = append(ad.Fresh, c.Name)
			continue
		}
		b := books[c.Name]
		rec := &containerRecord{spec: c, mount: mount, origin: mountOrigin(mount, ""), status: messages.StatusInstalled, since: now,
			retries: b.Retries, lastExit: b.LastExit}
		if c.StatusGoal == state.GoalMounted {
			rec.status = messages.StatusMounted
		}
		if run != nil {
			rec.run, rec.running, rec.armed = run, true, true
			rec.status, rec.startedAt = messages.StatusStarted, now
			if s, ok := run.(interface{ StartedAt() time.Time }); ok && !s.StartedAt().IsZero() {
				rec.startedAt = s.StartedAt() // its uptime goes on
			}
			if lease != nil {
				rec.lease = lease
				if pr := pools[lease.Pool]; pr != nil && pr.alloc != nil {
					if err := pr.alloc.Reserve(c.Name, lease.Addr.Addr()); err != nil {
						log.Warn("re-adopted lease not reserved", "container", c.Name, "addr", lease.Addr, "err", err)
					}
				}
			}
			if exited(run) {
				ad.Ended = append(ad.Ended, c.Name)
			} else {
				ad.Running = append(ad.Running, c.Name)
				if b.Ready {
					rec.status = messages.StatusReady
				}
			}
		} else {
			ad.Fresh = append(ad.Fresh, c.Name)
		}
		ad.h.containers[c.Name] = rec
	}
	return ad
}

// adoptWorkers bounds the pools and containers taken over at once. Taking
// one over is mostly waiting on the kernel and on iptables, and the
// control socket stays unanswered until every one is done.
const adoptWorkers = 8

// takenItem is what AdoptContainer answered for one container.
type takenItem struct {
	mount Mount
	run   Run
	lease *messages.Lease
	err   error
}

// sideBySide runs work(0..n-1), adoptWorkers at a time, and waits for
// them all. A work that panics is given to failed with the panic as its
// error: one item's bug is that item's failure (logged by the caller with
// its name), not the supervisor's death.
func sideBySide(n int, log *slog.Logger, work func(i int), failed func(i int, panicked error)) {
	sem := make(chan struct{}, adoptWorkers)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() {
				if p := recover(); p != nil {
					log.Error("panic while taking the device over", "panic", p, "stack", string(debug.Stack()))
					failed(i, fmt.Errorf("panic: %v", p))
				}
				<-sem
				wg.Done()
			}()
			work(i)
		}()
	}
	wg.Wait()
}

// exited says, without waiting, whether a run's init has ended.
func exited(run Run) bool {
	d, ok := run.(interface{ Done() <-chan struct{} })
	if !ok {
		return false
	}
	select {
	case <-d.Done():
		return true
	default:
		return false
	}
}

// poolPeers are the bridges of st's other bridge pools.
func poolPeers(st *state.State, p state.Pool) []string {
	var peers []string
	for _, q := range st.Pools {
		if q.Name != p.Name && q.Type == state.PoolBridge && q.Bridge != "" {
			peers = append(peers, q.Bridge)
		}
	}
	return peers
}

// take returns the handover once; nil after, or for a nil Adoption.
func (ad *Adoption) take() *handover {
	if ad == nil {
		return nil
	}
	h := ad.h
	ad.h = nil
	return h
}
