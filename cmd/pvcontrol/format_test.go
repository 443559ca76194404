package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"text/tabwriter"
)

// TestTableAsTabwriter: the table lays out as text/tabwriter (padding 2,
// widths in runes) did before it, for tables of any width with cells of
// any length, multi-byte ones included.
func TestTableAsTabwriter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "STARTED", "ünïcødé", "10.0.5.2/24", "signal 9, 3m05s ago", "", "x y"}
	for n := range 200 {
		cols, lines := 1+r.IntN(6), r.IntN(5)
		var got, want bytes.Buffer
		tb := newTable(&got)
		tw := tabwriter.NewWriter(&want, 0, 0, 2, ' ', 0)
		for range lines {
			cells := make([]string, cols)
			for i := range cells {
				cells[i] = words[r.IntN(len(words))] + strings.Repeat("w", r.IntN(4))
			}
			row(tb, cells...)
			for i, c := range cells {
				if i > 0 {
					fmt.Fprint(tw, "\t")
				}
				fmt.Fprint(tw, cell(c))
			}
			fmt.Fprint(tw, "\n")
		}
		if err := tb.Flush(); err != nil {
			t.Fatal(err)
		}
		tw.Flush()
		if got.String() != want.String() {
			t.Fatalf("table %d:\n%s\ntabwriter:\n%s", n, got.String(), want.String())
		}
	}
}
