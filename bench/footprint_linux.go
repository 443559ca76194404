package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ModuleDir is the root of this module, where the binary-size figure
// builds cmd/pantavisor; set by the runner.
var ModuleDir = "."

func init() {
	Register(Figure{
		Name:     "pantavisor RSS (reaper + supervisor, sum of VmRSS) with 20 containers STARTED",
		Baseline: "same processes on an empty revision, 0 containers",
		Unit:     "MiB",
		Limit:    30,
		Needs:    containerNeeds("pantavisor"),
		Run: func() (ours, base float64, err error) {
			f, err := newFixture()
			if err != nil {
				return 0, 0, err
			}
			defer func() { err = errors.Join(err, f.close()) }()
			if ours, err = deviceRSS(f, "rss20", coldN); err != nil {
				return 0, 0, err
			}
			if base, err = deviceRSS(f, "rss0", 0); err != nil {
				return 0, 0, err
			}
			return ours, base, nil
		},
	})
	Register(Figure{
		Name:     "stripped binary size of pantavisor (-ldflags='-s -w' -trimpath)",
		Baseline: "hello-world Go binary built the same way",
		Unit:     "MiB",
		Runs:     1, // the same on every run
		Needs:    []string{"exec:go"},
		Run:      binarySizes,
	})
}

// deviceRSS starts a device on a revision of n sleeping containers, waits
// until all are STARTED and the device reports its boot over, and returns
// the summed VmRSS, in MiB, of the device's PID 1 (the reaper) and its
// supervisor: the footprint of a device that runs its revision, not the
// peak of the boot burst. The host-side process that only waits for them
// is not counted.
func deviceRSS(f *fixture, name string, n int) (float64, error) {
	d, _, err := startRevision(f, name, n)
	if err != nil {
		return 0, err
	}
	// startRevision returned on the boot report, which is also when root
	// runs what follows a boot.
	time.Sleep(bootSettle)
	kb, err := func() (int, error) {
		reaper, sups, err := d.namespacePids()
		if err != nil {
			return 0, err
		}
		total := 0
		for _, pid := range append([]int{reaper}, sups...) {
			st, err := status(pid, "VmRSS", "RssAnon", "RssFile", "RssShmem")
			if err != nil {
				return 0, err
			}
			// PSS shares the pages several processes map (the binary's
			// page cache, with the host-side process and the container
			// inits) between them; VmRSS counts them in full.
			pss := "?"
			if r, err := smapsRollup(pid, "Pss"); err == nil {
				pss = strconv.Itoa(r["Pss"])
			}
			logf("%s: pid %d VmRSS %d kB (anon %d, file %d, shmem %d), Pss %s kB", name, pid, st["VmRSS"], st["RssAnon"], st["RssFile"], st["RssShmem"], pss)
			total += st["VmRSS"]
		}
		if st, err := status(d.cmd.Process.Pid, "VmRSS"); err == nil {
			logf("%s: host-side process (not counted) VmRSS %d kB", name, st["VmRSS"])
		}
		return total, nil
	}()
	if err != nil {
		d.kill()
		return 0, err
	}
	if err := d.stopAndCheck(); err != nil {
		return 0, err
	}
	return float64(kb) / 1024, nil
}

// binarySizes builds cmd/pantavisor and a hello-world program with the
// same flags and returns both sizes in MiB. The builds never reach the
// network: the module cache is filled by `make build` before the bench.
func binarySizes() (ours, base float64, err error) {
	dir, err := os.MkdirTemp("", "pvbench-size-")
	if err != nil {
		return 0, 0, fmt.Errorf("binary size: %w", err)
	}
	defer os.RemoveAll(dir)
	hello := filepath.Join(dir, "hello")
	if err := os.MkdirAll(hello, 0o755); err != nil {
		return 0, 0, fmt.Errorf("binary size: %w", err)
	}
	files := map[string]string{
		"go.mod":  "module hello\n\ngo 1.26\n",
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello, world\") }\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(hello, name), []byte(content), 0o644); err != nil {
			return 0, 0, fmt.Errorf("binary size: %w", err)
		}
	}
	build := func(srcDir, pkg, out string) (float64, error) {
		cmd := exec.Command("go", "build", "-ldflags=-s -w", "-trimpath", "-o", out, pkg)
		cmd.Dir = srcDir
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOTOOLCHAIN=local", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("go build %s: %w: %s", pkg, err, strings.TrimSpace(string(out)))
		}
		fi, err := os.Stat(out)
		if err != nil {
			return 0, fmt.Errorf("binary size: %w", err)
		}
		logf("%s: %d bytes", pkg, fi.Size())
		return float64(fi.Size()) / (1 << 20), nil
	}
	t0 := time.Now()
	if ours, err = build(ModuleDir, "./cmd/pantavisor", filepath.Join(dir, "pantavisor")); err != nil {
		return 0, 0, err
	}
	if base, err = build(hello, ".", filepath.Join(dir, "hello-world")); err != nil {
		return 0, 0, err
	}
	logf("builds took %v", time.Since(t0).Round(time.Millisecond))
	return ours, base, nil
}
