package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/ingress"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/xconnect"
)

// The ingress HTTP figures: wrk (8 connections, keep-alive) through a
// proxy to an nginx backend serving a small page; the proxy alone on CPU
// 0, wrk and the backend on CPU 1. The CPU time the proxy spent per
// request is compared with nginx's (one worker, upstream keep-alive) in
// the same run, with requests/s and p99. Each run gives each side two
// turns of wrk, in the order of abba: measured one after the other, the
// two sides' single turns differed by up to half on this kind of VM
// (ratios of 0.56 to 1.46 in one invocation of 15 runs).

// wrkFor is one turn of wrk; each side has two per run.
const wrkFor = "2s"

func init() {
	needs := []string{"root", "pid1", "exec:nginx", "exec:wrk", "exec:taskset"}
	var runs [3]int
	Register(Figure{
		Name: "http ingress: CPU time per request (proxy on its own core, wrk -c8)", Baseline: "nginx, 1 worker, upstream keepalive",
		Unit: "µs", Goal: 1.0, Needs: needs,
		Run: func() (float64, float64, error) {
			o, b, err := httpIngressVs(&runs[0])
			return o.cpuPerReq, b.cpuPerReq, err
		},
	})
	Register(Figure{
		Name: "http ingress: requests/s (proxy on its own core, wrk -c8)", Baseline: "nginx, 1 worker, upstream keepalive",
		Unit: "req/s", Higher: true, Needs: needs,
		Run: func() (float64, float64, error) { o, b, err := httpIngressVs(&runs[1]); return o.rps, b.rps, err },
	})
	Register(Figure{
		Name: "http ingress: p99 latency (proxy on its own core, wrk -c8)", Baseline: "nginx, 1 worker, upstream keepalive",
		Unit: "ms", Needs: needs,
		Run: func() (float64, float64, error) { o, b, err := httpIngressVs(&runs[2]); return o.p99ms, b.p99ms, err },
	})
}

type wrkResult struct{ cpuPerReq, rps, p99ms float64 }

// freePort is a loopback port nothing listens on now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startNginx runs nginx with one worker and the given server block, pinned
// to cpu; it returns the worker's pid and a stop function.
func startNginx(dir, name, server string, cpu int) (int, func(), error) {
	conf := filepath.Join(dir, name+".conf")
	text := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %s/%s.pid;
error_log stderr error;
events { worker_connections 1024; }
http {
    access_log off;
    %s
}
`, dir, name, server)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return 0, nil, err
	}
	cmd := exec.Command("taskset", "-c", strconv.Itoa(cpu), "nginx", "-c", conf, "-p", dir, "-e", "stderr")
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop := func() { cmd.Process.Signal(syscall.SIGQUIT); cmd.Wait() }
	// The worker is the master's child.
	for i := 0; i < 100; i++ {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if f := strings.Fields(string(data)); len(f) > 0 {
			pid, _ := strconv.Atoi(f[0])
			return pid, stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return 0, nil, fmt.Errorf("nginx %s: no worker", name)
}

// cpuOf is a process's user+system CPU time so far.
func cpuOf(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ
}

// onOneCPU runs this process as a program started under taskset -c cpu
// would: every thread on cpu, and one P. Pinned after its start with its
// Ps left as they were, two Ps would share the core (idle ones spinning
// and handing work over) as no deployment does. It returns what puts the
// affinity and the Ps back.
func onOneCPU(cpu int) (restore func(), err error) {
	var was, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		return nil, err
	}
	set.Set(cpu)
	if err := setAffinity(&set); err != nil {
		setAffinity(&was)
		return nil, err
	}
	procs := runtime.GOMAXPROCS(1)
	return func() {
		runtime.GOMAXPROCS(procs)
		setAffinity(&was)
	}, nil
}

func setAffinity(set *unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		if err := unix.SchedSetaffinity(tid, set); err != nil {
			return err
		}
	}
	return nil
}

var (
	wrkReqs = regexp.MustCompile(`(\d+) requests in`)
	wrkRPS  = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkP99  = regexp.MustCompile(`\s99%\s+([\d.]+)(us|ms|s)`)
)

// runWrk loads url from CPU 1 and reads requests, requests/s and p99.
func runWrk(url string) (reqs, rps, p99ms float64, err error) {
	out, err := exec.Command("taskset", "-c", "1", "wrk", "-t1", "-c8", "-d"+wrkFor, "--latency", url).CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("wrk: %w: %s", err, out)
	}
	s := string(out)
	m1, m2, m3 := wrkReqs.FindStringSubmatch(s), wrkRPS.FindStringSubmatch(s), wrkP99.FindStringSubmatch(s)
	if m1 == nil || m2 == nil || m3 == nil || strings.Contains(s, "Non-2xx") {
		return 0, 0, 0, fmt.Errorf("wrk output: %s", s)
	}
	reqs, _ = strconv.ParseFloat(m1[1], 64)
	rps, _ = strconv.ParseFloat(m2[1], 64)
	p99ms, _ = strconv.ParseFloat(m3[1], 64)
	switch m3[2] {
	case "us":
		p99ms /= 1000
	case "s":
		p99ms *= 1000
	}
	return reqs, rps, p99ms, nil
}

func httpIngressVs(runs *int) (ours, base wrkResult, err error) {
	if err := loUp(); err != nil {
		return ours, base, err
	}
	dir, err := os.MkdirTemp("", "pvbench-http")
	if err != nil {
		return ours, base, err
	}
	defer os.RemoveAll(dir)
	backAddr, _ := freePort()
	_, stopBack, err := startNginx(dir, "backend", fmt.Sprintf(`server { listen %s; location / { return 200 "hello from the backend\n"; } }`, backAddr), 1)
	if err != nil {
		return ours, base, err
	}
	defer stopBack()
	proxyAddr, _ := freePort()
	ngWorker, stopProxy, err := startNginx(dir, "proxy", fmt.Sprintf(`upstream b { server %s; keepalive 32; }
    server { listen %s; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } }`, backAddr, proxyAddr), 0)
	if err != nil {
		return ours, base, err
	}
	defer stopProxy()

	ingAddr, _ := freePort()
	_, portS, _ := net.SplitHostPort(backAddr)
	port, _ := strconv.Atoi(portS)
	s, err := (&ingress.Plane{Log: quietLog()}).Listen(actors.IngressListener{Type: "http", Addr: ingAddr, Rules: []actors.IngressRule{{
		IngressRule: state.IngressRule{Type: "http", Prefix: "/", Provider: "backend", Service: "web"}, Port: port}}}, []*xconnect.Stats{{}})
	if err != nil {
		return ours, base, err
	}
	defer s.Close()
	s.Backend(0, xconnect.Ends{ProviderPid: os.Getpid()})

	// Each side's figure is over its two turns of the run (abba): the
	// requests and CPU time summed, p99 their mean.
	var o, b wrkSum
	measureOurs := func() error {
		restore, err := onOneCPU(0)
		if err != nil {
			return err
		}
		defer restore()
		var ru0, ru1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		reqs, rps, p99, err := runWrk("http://" + ingAddr + "/")
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		if err != nil {
			return err
		}
		cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
		o.add(reqs, rps, p99, cpu)
		logf("ingress: %.0f requests, %v of CPU", reqs, cpu.Round(time.Millisecond))
		return nil
	}
	measureNginx := func() error {
		c0, err := cpuOf(ngWorker)
		if err != nil {
			return err
		}
		reqs, rps, p99, err := runWrk("http://" + proxyAddr + "/")
		if err != nil {
			return err
		}
		c1, _ := cpuOf(ngWorker)
		b.add(reqs, rps, p99, c1-c0)
		logf("nginx: %.0f requests, %v of CPU", reqs, c1-c0)
		return nil
	}
	if err := abba(runs, measureOurs, measureNginx); err != nil {
		return ours, base, err
	}
	return o.result(), b.result(), nil
}

// wrkSum adds up one side's turns of wrk in a run.
type wrkSum struct {
	turns           int
	reqs, rps, p99s float64
	cpu             time.Duration
}

func (w *wrkSum) add(reqs, rps, p99ms float64, cpu time.Duration) {
	w.turns++
	w.reqs += reqs
	w.rps += rps
	w.p99s += p99ms
	w.cpu += cpu
}

func (w *wrkSum) result() wrkResult {
	n := float64(w.turns)
	return wrkResult{cpuPerReq: float64(w.cpu.Microseconds()) / w.reqs, rps: w.rps / n, p99ms: w.p99s / n}
}
