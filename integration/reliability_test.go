//go:build integration

package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/pantavisor/pv/reliability"
)

// The reliability suite (issue 18) is the TestReliability* tests of this
// package: `make reliability` runs them with PROFILE=full (the default),
// `make test` with PROFILE=short, and `make integration` leaves them out.
// Each case records one row; TestMain prints the table and its last line
// "N passed, M failed" after the run, and fails the run when a case did.

// suite collects the rows of the cases that ran.
var suite reliability.Table

// printSuite prints the table when any case ran, and returns the exit
// code: code, or 1 when a case failed.
func printSuite(code int) int {
	if suite.Len() == 0 {
		return code
	}
	fmt.Println()
	if suite.Print(os.Stdout) > 0 && code == 0 {
		return 1
	}
	return code
}

// profile is PROFILE's budget; a bad value fails the case at once.
func profile(t *testing.T) reliability.Profile {
	t.Helper()
	p, err := reliability.ProfileFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runs is n for the full profile, short for the short one.
func runs(t *testing.T, full, short int) int {
	if profile(t) == "short" {
		return short
	}
	return full
}

// record adds t's row when t ends: runs done, those that passed (all of
// them unless t failed, when the last one did not), and the figure
// figure gives then.
func record(t *testing.T, name string, done, passed *int, figure func() string) {
	t.Cleanup(func() {
		p := *passed
		if t.Failed() && p >= *done {
			p = *done - 1
		}
		suite.Record(reliability.Row{Case: name, Runs: *done, Passed: max(p, 0), Figure: figure()})
	})
}

// seeded is a random source seeded from the variable env when it is set
// (to replay a run), from the clock otherwise; the seed is logged with
// the way to replay it.
func seeded(t *testing.T, env string) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(env); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", env, err)
		}
	}
	t.Logf("seed %d (replay with %s=%d)", seed, env, seed)
	return rand.New(rand.NewPCG(seed, seed))
}
