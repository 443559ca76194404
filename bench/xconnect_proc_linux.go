package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The unix round trip figure (xconnect_linux.go) runs the client, the
// link and the provider as goroutines of one process, where a hand-off
// between them costs a goroutine switch. On a device each is a process
// of its own (the consumer's container, pantavisor, the provider's
// container), and every hop costs a process switch. These figures
// measure that layout: the client and the provider are copies of this
// binary, the link runs here, and socat, a plain relay in a process of
// its own, is measured the same way as a reference. Neither has a goal:
// they show what a relay costs per round trip where process switches
// dominate (on a VM they are dear).

// helperEnv selects a helper role for a copy of this binary.
const helperEnv = "PVBENCH_HELPER"

func init() {
	Register(Figure{
		Name:     "unix link: round trip p50, client and provider in processes of their own",
		Baseline: "direct to the provider's socket, same processes",
		Unit:     "µs",
		Run: func() (float64, float64, error) {
			return procRoundTrip(func(r *linkRig) (string, func(), error) { return r.link, func() {}, nil })
		},
	})
	Register(Figure{
		Name:     "socat relay (reference): round trip p50, client and provider in processes of their own",
		Baseline: "direct to the provider's socket, same processes",
		Unit:     "µs", Needs: []string{"exec:socat"},
		Run: func() (float64, float64, error) { return procRoundTrip(socatRelay) },
	})
}

// HelperMain runs a helper role and exits, when this process is one:
// "echo PATH" serves PATH as the provider does (an echo per connection)
// and prints "ready"; "ping PATH..." prints the median round trip through
// each PATH, one per line, as pingP50s measures them.
func HelperMain() {
	role := os.Getenv(helperEnv)
	if role == "" {
		return
	}
	if err := helper(role, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pvbench %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func helper(role string, args []string) error {
	switch {
	case len(args) == 0:
		return fmt.Errorf("no socket path")
	case role == "echo" && len(args) != 1:
		return fmt.Errorf("want one socket path, got %q", args)
	}
	switch role {
	case "echo":
		if _, err := provider(args[0]); err != nil {
			return err
		}
		fmt.Println("ready")
		select {} // until the figure kills it
	case "ping":
		// Not on this goroutine, which initshim locks to the main
		// thread (see offMain).
		var p50 []float64
		var err error
		offMain(func() { p50, err = pingP50s(args...) })
		if err != nil {
			return err
		}
		for _, v := range p50 {
			fmt.Println(v)
		}
		return nil
	}
	return fmt.Errorf("unknown role")
}

// startHelper starts a copy of this binary in role.
func startHelper(role string, paths ...string) (*exec.Cmd, io.ReadCloser, error) {
	// Not os.Executable: this process may run from a sealed copy
	// (driver.PrepareExeSealing), which has no path of its own.
	cmd := exec.Command("/proc/self/exe", paths...)
	cmd.Env = append(os.Environ(), helperEnv+"="+role)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return cmd, out, nil
}

// procProvider serves path from a provider process of its own.
func procProvider(path string) (func(), error) {
	cmd, out, err := startHelper("echo", path)
	if err != nil {
		return nil, err
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		stop()
		return nil, fmt.Errorf("echo provider did not start: %q, %v", line, err)
	}
	return stop, nil
}

// procPing measures the round trips through paths, interleaved, from a
// client process of its own.
func procPing(paths ...string) ([]float64, error) {
	cmd, out, err := startHelper("ping", paths...)
	if err != nil {
		return nil, err
	}
	b, rerr := io.ReadAll(out)
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("ping client: %w", err)
	}
	if rerr != nil {
		return nil, rerr
	}
	lines := strings.Fields(string(b))
	if len(lines) != len(paths) {
		return nil, fmt.Errorf("ping client: %d figures for %d paths: %q", len(lines), len(paths), b)
	}
	p50 := make([]float64, len(lines))
	for i, l := range lines {
		if p50[i], err = strconv.ParseFloat(l, 64); err != nil {
			return nil, fmt.Errorf("ping client: %w", err)
		}
	}
	return p50, nil
}

// socatRelay starts socat relaying a socket of its own to the provider.
func socatRelay(r *linkRig) (string, func(), error) {
	path := filepath.Join(r.dir, "socat.sock")
	cmd := exec.Command("socat", "UNIX-LISTEN:"+path+",fork", "UNIX-CONNECT:"+r.prov)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	if err := waitFor("socat to listen on "+path, 5*time.Second, func() bool {
		_, err := os.Stat(path)
		return err == nil
	}); err != nil {
		stop()
		return "", nil, err
	}
	return path, stop, nil
}

// procRoundTrip measures the round trip through the relay via makes
// and directly, interleaved, with the provider and the client in
// processes of their own.
func procRoundTrip(via func(*linkRig) (string, func(), error)) (ours, base float64, err error) {
	r, err := newLinkRig(procProvider)
	if err != nil {
		return 0, 0, err
	}
	defer r.close()
	path, stop, err := via(r)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	p50, err := procPing(path, r.prov)
	if err != nil {
		return 0, 0, err
	}
	return p50[0], p50[1], nil
}
