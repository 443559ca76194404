package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/ctrl"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

// ctrlN is the number of containers the control-socket figures list.
const ctrlN = 100

// ctrlLoadFor is how long each side of a load figure is driven per run.
const ctrlLoadFor = 500 * time.Millisecond

// ctrlWarm is how many requests each client sends before the clock
// starts: connection set-up and first-use costs are not the steady state.
const ctrlWarm = 50

// ctrlRig names the system under test in the figure names: the socket,
// ctrl's checks and handler and the JSON of a real actor tree, whose
// containers run on an engine that starts nothing.
const ctrlRig = "real actor tree, no-op engine"

func init() {
	for _, clients := range []int{1, 8} {
		runs := 0 // of this figure pair so far: it decides which side goes first
		what := fmt.Sprintf("GET /containers, %d containers (%s), unix socket, %d keep-alive client", ctrlN, ctrlRig, clients)
		if clients > 1 {
			what += "s"
		}
		base := "bare net/http handler serving the same bytes on a unix socket"
		Register(Figure{
			Name: what + ": requests/s", Baseline: base, Unit: "req/s",
			Goal: 0.8, Higher: true,
			Run: func() (float64, float64, error) {
				o, b, err := ctrlLoad(&runs, clients)
				return o.rps, b.rps, err
			},
		})
		Register(Figure{
			Name: what + ": p99 latency", Baseline: base, Unit: "ms",
			Goal: 1.5,
			Run: func() (float64, float64, error) {
				o, b, err := ctrlLoad(&runs, clients)
				return o.p99ms, b.p99ms, err
			},
		})
	}
	Register(Figure{
		Name:     fmt.Sprintf("pvcontrol ls wall time, process start included, %d containers (%s)", ctrlN, ctrlRig),
		Baseline: "curl --unix-socket of GET /containers, same server",
		Unit:     "ms",
		Limit:    10,
		Needs:    []string{"exec:curl", "pvcontrol"},
		Run:      pvcontrolLs,
	})
	RegisterNeed("pvcontrol", func() string {
		if _, err := os.Stat(pvcontrolBin()); err != nil {
			return "needs bin/pvcontrol beside the pantavisor binary (make build)"
		}
		return ""
	})
}

// pvcontrolBin is pvcontrol as make build leaves it, beside pantavisor.
func pvcontrolBin() string { return filepath.Join(filepath.Dir(PantavisorBin), "pvcontrol") }

// ctrlDevice is a control socket served as pantavisor serves it (ctrl.New
// over an *actors.System, the cgroup resolver, the default limits and
// metrics) for ctrlN STARTED containers, and beside it, on a socket of the
// same kind, a bare net/http handler answering the bytes the real server
// answered to GET /containers. One difference from the device: pvbench is
// built with GOEXPERIMENT=jsonv2 (Makefile) and pantavisor is not; the
// server encodes the list only when it changes, so the load figures do
// not depend on which encoding/json it runs.
type ctrlDevice struct {
	dir        string
	sys        *actors.System
	srv, bare  *http.Server
	real       *ctrl.Server
	sock, bsok string
	body       []byte
}

func startCtrlDevice() (d *ctrlDevice, err error) {
	dir, err := os.MkdirTemp("", "pvbench-ctrl-")
	if err != nil {
		return nil, err
	}
	d = &ctrlDevice{dir: dir, sock: filepath.Join(dir, "pv-ctrl"), bsok: filepath.Join(dir, "bare")}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.close())
			d = nil
		}
	}()
	st, err := ctrlState(ctrlN)
	if err != nil {
		return nil, err
	}
	log := quietLog()
	d.sys, err = actors.Start(actors.Config{Rev: "0", State: st, Engine: &noopEngine{}, Log: log})
	if err != nil {
		return nil, err
	}
	if err := waitFor(fmt.Sprintf("%d containers STARTED", ctrlN), 30*time.Second, func() bool {
		cs, err := d.sys.Containers()
		return err == nil && len(cs) == ctrlN && !slices.ContainsFunc(cs, func(c messages.ContainerInfo) bool {
			return c.Status != messages.StatusStarted
		})
	}); err != nil {
		return nil, err
	}
	d.real = ctrl.New(d.sys, ctrl.CgroupResolver(ctrl.DefaultCgroupParent), log)
	l, err := ctrl.Listen(d.sock)
	if err != nil {
		return nil, err
	}
	go func() { _ = d.real.Serve(l) }()
	c := unixClient(d.sock)
	defer c.CloseIdleConnections()
	if d.body, err = getContainers(c); err != nil {
		return nil, fmt.Errorf("real server: %w", err)
	}
	bl, err := net.Listen("unix", d.bsok)
	if err != nil {
		return nil, err
	}
	body, n := d.body, strconv.Itoa(len(d.body))
	d.bare = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", n)
		_, _ = w.Write(body)
	})}
	go func() { _ = d.bare.Serve(bl) }()
	return d, nil
}

func (d *ctrlDevice) close() error {
	var errs []error
	if d.real != nil {
		errs = append(errs, d.real.Close())
	}
	if d.bare != nil {
		errs = append(errs, d.bare.Close())
	}
	if d.sys != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, d.sys.Shutdown(ctx, "bench end"))
		cancel()
	}
	errs = append(errs, os.RemoveAll(d.dir))
	return errors.Join(errs...)
}

// ctrlState is a revision of n containers in one STARTED group, as
// appengine parses it.
func ctrlState(n int) (*state.State, error) {
	doc := map[string]any{
		"#spec": state.SpecSystem1,
		"device.json": map[string]any{"groups": []any{
			map[string]any{"name": "app", "status_goal": "STARTED", "timeout": 30},
		}},
	}
	for i := range n {
		name := fmt.Sprintf("c%03d", i)
		doc[name+"/run.json"] = map[string]any{"name": name, "group": "app", "root-volume": "root.squashfs", "auto_recovery": map[string]any{"policy": "no"}}
		doc[name+"/root.squashfs"] = strings.Repeat("0", 64) // parsed only: never mounted
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return state.Parse(data, state.Options{AppEngine: true})
}

// unixClient is a client whose every connection goes to the socket at
// path; it keeps one idle connection, so each client is one keep-alive
// connection.
func unixClient(path string) *http.Client {
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}}
}

// getContainers is one GET /containers with the whole answer read; an
// answer other than 200 is a *refusedError.
func getContainers(c *http.Client) ([]byte, error) {
	// The control socket only accepts Host "localhost" (or none), as
	// upstream's does.
	res, err := c.Get("http://localhost/containers")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, &refusedError{fmt.Sprintf("GET /containers: %s: %s", res.Status, bytes.TrimSpace(b))}
	}
	return b, nil
}

// fetchDiscard is one GET /containers whose answer, which must be 200 and
// size bytes, is read and dropped: the client allocates nothing per
// answer, so the garbage it would make does not weigh on the servers in
// this process.
func fetchDiscard(c *http.Client, size int) error {
	res, err := c.Get("http://localhost/containers")
	if err != nil {
		return err
	}
	defer res.Body.Close()
	n, err := io.Copy(io.Discard, res.Body)
	switch {
	case err != nil:
		return err
	case res.StatusCode != http.StatusOK:
		return fmt.Errorf("GET /containers: %s", res.Status)
	case n != int64(size):
		return fmt.Errorf("GET /containers: %d bytes, want %d", n, size)
	}
	return nil
}

// loadResult is one side of a load figure.
type loadResult struct {
	rps, p99ms float64
	n          int
}

// ctrlLoad starts a device and drives both sockets with clients
// concurrent keep-alive clients, each for ctrlLoadFor. The side that goes
// first alternates from run to run (alternate), so that a drift of the
// machine during a run is shared.
func ctrlLoad(runs *int, clients int) (ours, bare loadResult, err error) {
	d, err := startCtrlDevice()
	if err != nil {
		return ours, bare, err
	}
	defer func() { err = errors.Join(err, d.close()) }()
	err = alternate(runs, func() error {
		var err error
		if ours, err = drive(d.sock, clients, len(d.body)); err != nil {
			return fmt.Errorf("real server: %w", err)
		}
		return nil
	}, func() error {
		var err error
		if bare, err = drive(d.bsok, clients, len(d.body)); err != nil {
			return fmt.Errorf("bare handler: %w", err)
		}
		return nil
	})
	if err != nil {
		return ours, bare, err
	}
	logf("%d clients: real %.0f req/s p99 %.3f ms (%d requests); bare %.0f req/s p99 %.3f ms (%d requests); %d-byte answer",
		clients, ours.rps, ours.p99ms, ours.n, bare.rps, bare.p99ms, bare.n, len(d.body))
	return ours, bare, nil
}

// drive sends GET /containers to the socket at path from clients
// goroutines, each on its own keep-alive connection, for ctrlLoadFor after
// ctrlWarm requests each, and returns the requests per second and the
// 99th percentile of their latencies. Every answer must be 200 with size
// bytes.
func drive(path string, clients, size int) (loadResult, error) {
	var (
		wg    sync.WaitGroup
		ready sync.WaitGroup
		start = make(chan struct{})
		stop  atomic.Bool
		lat   = make([][]time.Duration, clients)
		errs  = make([]error, clients)
	)
	for i := range clients {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			c := unixClient(path)
			defer c.CloseIdleConnections()
			one := func() error { return fetchDiscard(c, size) }
			var err error
			for range ctrlWarm {
				if err = one(); err != nil {
					break
				}
			}
			ready.Done()
			<-start
			for err == nil && !stop.Load() {
				t0 := time.Now()
				err = one()
				lat[i] = append(lat[i], time.Since(t0))
			}
			errs[i] = err
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	time.Sleep(ctrlLoadFor)
	stop.Store(true)
	wg.Wait()
	took := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return loadResult{}, err
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return loadResult{}, errors.New("no request answered")
	}
	slices.Sort(all)
	p99 := all[min(len(all)-1, len(all)*99/100)]
	return loadResult{rps: float64(len(all)) / took.Seconds(), p99ms: float64(p99) / float64(time.Millisecond), n: len(all)}, nil
}

// pvcontrolRuns is how many times each side runs per figure run; the
// median is kept.
const pvcontrolRuns = 9

// pvcontrolLs times `pvcontrol -s SOCK ls` (a table of ctrlN containers,
// to /dev/null) and curl fetching the same answer, each started as a new
// process, the two alternating so that both see the machine in the same
// state. The device settles first: the start of ctrlN actors leaves
// garbage and goroutines winding down, whose collection would otherwise
// land on the first runs of whichever side came first.
func pvcontrolLs() (ours, base float64, err error) {
	d, err := startCtrlDevice()
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, d.close()) }()
	runtime.GC()
	time.Sleep(200 * time.Millisecond)
	mine := []string{pvcontrolBin(), "-s", d.sock, "ls"}
	curl := []string{"curl", "-sS", "-f", "-o", "/dev/null", "--unix-socket", d.sock, "http://localhost/containers"}
	var a, b []float64
	for i := range pvcontrolRuns + 1 {
		ta, err := timeRun(mine)
		if err != nil {
			return 0, 0, err
		}
		tb, err := timeRun(curl)
		if err != nil {
			return 0, 0, err
		}
		if i > 0 { // the first of each only warms the page cache
			a, b = append(a, ta), append(b, tb)
		}
	}
	return median(a), median(b), nil
}

// timeRun runs the command line argv and returns its wall time in ms.
func timeRun(argv []string) (float64, error) {
	took, err := Elapsed(exec.Command(argv[0], argv[1:]...).Run)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Base(argv[0]), err)
	}
	return float64(took) / float64(time.Millisecond), nil
}

// noopEngine starts nothing: its containers run until stopped. It lets
// the actor tree of ctrlN containers answer as on a device, without the
// cost of containers the figures do not measure.
type noopEngine struct{ pids atomic.Int64 }

func (e *noopEngine) Mount(*state.Container) (actors.Mount, error) { return noopMount{e}, nil }
func (e *noopEngine) Close() error                                 { return nil }

type noopMount struct{ e *noopEngine }

func (m noopMount) Start(*messages.Lease) (actors.Run, error) {
	return &noopRun{pid: 1000 + int(m.e.pids.Add(1)), done: make(chan struct{})}, nil
}
func (noopMount) Unmount() error { return nil }
func (noopMount) Origin() string { return "" }

type noopRun struct {
	pid  int
	done chan struct{}
	once sync.Once
	at   time.Time
}

func (r *noopRun) Pid() int { return r.pid }
func (r *noopRun) Wait() messages.Exit {
	<-r.done
	return messages.Exit{Signal: 15, At: r.at}
}
func (r *noopRun) Stop(time.Duration) error {
	r.once.Do(func() { r.at = time.Now(); close(r.done) })
	return nil
}
func (r *noopRun) Destroy() error { return nil }
