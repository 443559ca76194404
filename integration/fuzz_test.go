//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
)

// The fuzz case of the reliability suite (full profile): every fuzz target
// of FUZZ_TARGETS ("pkg:Func" pairs, as the Makefile lists them) run for
// fuzzRuns executions with go test -fuzz (a count, not a duration: Go
// 1.26's coordinator can report its own deadline as a failure on a busy
// machine, see the Makefile), one row each with its time. New
// inputs that widen coverage go to the package's testdata/fuzz corpus, as
// go test keeps them; a crasher fails the row and is saved there too. The
// short profile leaves fuzzing to make test's own fuzz step.

const fuzzRuns = "200000x"

func TestReliabilityFuzz(t *testing.T) {
	isolated.Require(t)
	if profile(t) == "short" {
		t.Skip("short profile: make test's fuzz step runs every target")
	}
	targets := strings.Fields(os.Getenv("FUZZ_TARGETS"))
	if len(targets) == 0 {
		t.Skip("FUZZ_TARGETS is empty: run through make reliability")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range targets {
		pkg, fn, ok := strings.Cut(target, ":")
		if !ok {
			t.Errorf("FUZZ_TARGETS entry %q: want pkg:Func", target)
			continue
		}
		t.Run(fn+"@"+pkg, func(t *testing.T) {
			done, passed := 1, 0
			var took time.Duration
			record(t, fmt.Sprintf("fuzz %s %s", pkg, fn), &done, &passed, func() string {
				return fmt.Sprintf("%s execs in %v", strings.TrimSuffix(fuzzRuns, "x"), took.Round(time.Second))
			})
			cmd := exec.Command("go", "test", "-run", "^$", "-fuzz", "^"+fn+"$", "-fuzztime", fuzzRuns, "-fuzzminimizetime", "10s", pkg)
			cmd.Dir = root
			start := time.Now()
			out, err := cmd.CombinedOutput()
			took = time.Since(start)
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", pkg, fn, err, out)
			}
			passed = 1
		})
	}
}
