// Command pvbench runs every figure registered in package bench and prints
// the table `make bench` shows. It never fails on speed: only a figure that
// cannot be measured at all makes it exit non-zero.
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"

	"github.com/pantavisor/pv/bench"
)

func main() {
	runs := flag.Int("runs", 5, "runs per figure; the median is reported")
	only := flag.String("run", "", "only figures whose name matches this regexp")
	fixtures := flag.String("fixtures", bench.FixturesDir, "directory of upstream state fixtures")
	flag.Parse()
	bench.FixturesDir = *fixtures
	var re *regexp.Regexp
	if *only != "" {
		var err error
		if re, err = regexp.Compile(*only); err != nil {
			fmt.Fprintf(os.Stderr, "pvbench: bad -run: %v\n", err)
			os.Exit(2)
		}
	}
	var results []bench.Result
	failed := false
	for _, f := range bench.Figures() {
		if re != nil && !re.MatchString(f.Name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "measuring: %s (%d runs)\n", f.Name, *runs)
		r := bench.Measure(f, *runs)
		failed = failed || r.Err != nil
		results = append(results, r)
	}
	bench.Print(os.Stdout, results)
	if failed {
		os.Exit(1)
	}
}
