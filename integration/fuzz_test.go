//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
)

// The fuzz case of the reliability suite (full profile): every fuzz target
// of FUZZ_TARGETS ("pkg:Func" pairs, as the Makefile lists them) run for
// fuzzBudget with go test -fuzz, one row each with its executions. New
// inputs that widen coverage go to the package's testdata/fuzz corpus, as
// go test keeps them; a crasher fails the row and is saved there too. The
// short profile leaves fuzzing to make test's own fuzz step.

const fuzzBudget = 30 * time.Second

var execsRE = regexp.MustCompile(`execs: (\d+)`)

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
			var execs string
			record(t, fmt.Sprintf("fuzz %s %s", pkg, fn), &done, &passed, func() string {
				return fmt.Sprintf("%s execs in %v", execs, fuzzBudget)
			})
			cmd := exec.Command("go", "test", "-run", "^$", "-fuzz", "^"+fn+"$", "-fuzztime", fuzzBudget.String(), pkg)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			if m := execsRE.FindAllSubmatch(out, -1); len(m) > 0 {
				execs = string(m[len(m)-1][1])
			}
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", pkg, fn, err, out)
			}
			passed = 1
		})
	}
}
