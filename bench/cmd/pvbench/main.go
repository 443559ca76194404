// Command pvbench runs every figure registered in package bench and prints
// the table `make bench` shows. It never fails on speed: only a figure that
// cannot be measured at all makes it exit non-zero; a figure whose needs
// are not met (root, PID 1 of fresh namespaces, a runtime to compare with)
// is skipped with the reason.
//
// The container figures start containers in this process, so it is also
// libcontainer's init (initshim) and prepares the protection of its
// binary as pantavisor does (driver.PrepareExeSealing). `make bench` runs it as PID 1 of fresh pid, net and
// mount namespaces:
//
//	unshare --pid --net --mount --fork --mount-proc bin/pvbench
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/pantavisor/pv/bench"
	"github.com/pantavisor/pv/runtime/driver"
	_ "github.com/pantavisor/pv/runtime/driver/initshim" // "pvbench init" is a container's init
	"github.com/pantavisor/pv/xconnect"
)

func main() {
	// A copy started to dial a D-Bus link's provider as another uid
	// (the D-Bus figure) does only that.
	xconnect.HelperMain()
	// So does a copy started as a client or provider of the figures
	// that run those in processes of their own.
	bench.HelperMain()
	// Before anything else, as pantavisor does: make sure libcontainer
	// does not copy the binary at every container start (its overlay, or
	// else a sealed copy made once, which re-executes this process). The
	// containers' state directories are under the temporary directory.
	if _, err := driver.PrepareExeSealing(os.TempDir()); err != nil {
		fmt.Fprintf(os.Stderr, "pvbench: %v (containers will copy the binary at each start)\n", err)
	}
	runs := flag.Int("runs", 5, "runs per figure; the median is reported")
	only := flag.String("run", "", "only figures whose name or baseline matches this regexp")
	fixtures := flag.String("fixtures", bench.FixturesDir, "directory of upstream state fixtures")
	pv := flag.String("pantavisor", bench.PantavisorBin, "pantavisor binary the appengine figures run")
	src := flag.String("src", bench.ModuleDir, "root of this module (the binary-size figure builds it)")
	verbose := flag.Bool("v", false, "print details (time breakdowns, RSS parts) on stderr")
	soak := flag.Bool("soak", false, "also run the crash-loop soak figures (opt-in: 5 min each by default)")
	soakFor := flag.Duration("soakfor", 5*time.Minute, "length of each crash-loop soak (with -soak)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (every side of every figure) to this file")
	flag.Parse()
	if *soak {
		bench.Soak = *soakFor
	}
	bench.FixturesDir = *fixtures
	bench.Verbose = *verbose
	for _, p := range []struct {
		dst *string
		src string
	}{{&bench.PantavisorBin, *pv}, {&bench.ModuleDir, *src}} {
		abs, err := filepath.Abs(p.src)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pvbench: %v\n", err)
			os.Exit(2)
		}
		*p.dst = abs
	}
	// The containers' init, as pantavisor finds it: pvinit beside the
	// pantavisor binary.
	if err := bench.OpenContainerInit(driver.InitPath(bench.PantavisorBin), filepath.Join(os.TempDir(), "pvbench-init-lower")); err != nil {
		fmt.Fprintf(os.Stderr, "pvbench: %v (containers start from pvbench itself)\n", err)
	}
	var re *regexp.Regexp
	if *only != "" {
		var err error
		if re, err = regexp.Compile(*only); err != nil {
			fmt.Fprintf(os.Stderr, "pvbench: bad -run: %v\n", err)
			os.Exit(2)
		}
	}
	// As PID 1 the kernel delivers no signal this process does not handle:
	// without this, Ctrl-C would kill unshare and leave pvbench running.
	// Everything it started dies with its pid and mount namespaces.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "pvbench: %v\n", s)
		os.Exit(130)
	}()
	stopProfile := func() {}
	if *cpuProfile != "" {
		var err error
		if stopProfile, err = startProfile(*cpuProfile); err != nil {
			fmt.Fprintf(os.Stderr, "pvbench: %v\n", err)
			os.Exit(2)
		}
	}
	var results []bench.Result
	failed := false
	for _, f := range bench.Figures() {
		if re != nil && !re.MatchString(f.Name) && !re.MatchString(f.Baseline) {
			continue
		}
		fmt.Fprintf(os.Stderr, "measuring: %s vs %s\n", f.Name, f.Baseline)
		t0 := time.Now()
		r := bench.Measure(f, *runs)
		switch {
		case r.Skipped != "":
			fmt.Fprintf(os.Stderr, "  skipped: %s\n", r.Skipped)
		case r.Err != nil:
			fmt.Fprintf(os.Stderr, "  error: %v\n", r.Err)
		default:
			fmt.Fprintf(os.Stderr, "  done in %v\n", time.Since(t0).Round(100*time.Millisecond))
		}
		failed = failed || r.Err != nil
		results = append(results, r)
	}
	stopProfile()
	bench.Print(os.Stdout, results)
	if failed {
		os.Exit(1)
	}
}

// startProfile starts a CPU profile into path; stop ends and closes it.
func startProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "pvbench: cpu profile: %v\n", err)
		}
	}, nil
}
