// Package reliability holds the reliability suite's bookkeeping: the
// profile that sets each case's budget and the one table printed at the end.
package reliability

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Profile selects budgets: "short" for make test, "full" for make reliability.
type Profile string

// ProfileFromEnv reads PROFILE; unset means full, anything else is an error
// naming the bad value so a typo never silently runs the wrong budget.
func ProfileFromEnv() (Profile, error) {
	switch p := os.Getenv("PROFILE"); p {
	case "", "full":
		return "full", nil
	case "short":
		return "short", nil
	default:
		return "", fmt.Errorf("PROFILE=%q: want short or full", p)
	}
}

// Row is one case's result.
type Row struct {
	Case   string
	Runs   int
	Passed int
	Figure string
}

// Table collects rows from cases that may run in parallel.
type Table struct {
	mu   sync.Mutex
	rows []Row
}

// Record adds a case's row.
func (t *Table) Record(r Row) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows = append(t.rows, r)
}

// Len is the number of rows recorded.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.rows)
}

// Print writes the table and the last line "N passed, M failed"; it
// returns M so TestMain can exit non-zero. A case passes when every run did.
func (t *Table) Print(w io.Writer) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(w, "%-48s %6s %6s  %s\n", "case", "runs", "passed", "figure")
	passed, failed := 0, 0
	for _, r := range t.rows {
		fmt.Fprintf(w, "%-48s %6d %6d  %s\n", r.Case, r.Runs, r.Passed, r.Figure)
		if r.Runs > 0 && r.Passed == r.Runs {
			passed++
		} else {
			failed++
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", passed, failed)
	return failed
}
