package reliability

import (
	"strings"
	"testing"
)

func TestTablePrintCountsFailures(t *testing.T) {
	var tb Table
	tb.Record(Row{Case: "ok", Runs: 3, Passed: 3, Figure: "x"})
	tb.Record(Row{Case: "bad", Runs: 3, Passed: 2})
	tb.Record(Row{Case: "none", Runs: 0, Passed: 0})
	var b strings.Builder
	if got := tb.Print(&b); got != 2 {
		t.Fatalf("failed = %d, want 2", got)
	}
	if !strings.HasSuffix(b.String(), "1 passed, 2 failed\n") {
		t.Fatalf("last line wrong:\n%s", b.String())
	}
}

func TestProfileFromEnv(t *testing.T) {
	for in, want := range map[string]Profile{"": "full", "full": "full", "short": "short"} {
		t.Setenv("PROFILE", in)
		if got, err := ProfileFromEnv(); err != nil || got != want {
			t.Fatalf("PROFILE=%q: got %q, %v", in, got, err)
		}
	}
	t.Setenv("PROFILE", "shrot")
	if _, err := ProfileFromEnv(); err == nil || !strings.Contains(err.Error(), "shrot") {
		t.Fatalf("bad profile: err = %v", err)
	}
}
