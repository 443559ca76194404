//go:build integration

package integration

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite the golden files of the upstream pvcontrol test")

// upstreamCommands are the subcommands of upstream's pvcontrol script that
// make sense on a device without a hub, in an order that leaves the
// device as it was (a reboot or a power-off would end the test).
var upstreamCommands = [][]string{
	{"ls"},
	{"containers", "ls"},
	{"groups", "ls"},
	{"containers", "stop", "b"},
	{"containers", "start", "b"},
	{"containers", "restart", "b"},
	{"signal", "ready"},
	{"devmeta", "save", "probe", "on"},
	{"devmeta", "ls"},
	{"devmeta", "delete", "probe"},
	{"usrmeta", "save", "probe", "on"},
	{"usrmeta", "ls"},
	{"usrmeta", "delete", "probe"},
	{"buildinfo"},
	{"config", "ls"},
	{"conf", "ls"},
	{"graph", "ls"},
	{"daemons", "ls"},
	{"daemons", "stop", "none"},
	{"objects", "ls"},
	{"steps", "ls"},
	{"steps", "get", "current"},
	{"steps", "show-progress", "0"},
	{"cmd", "run-gc"},
	{"storage", "gc"},
	{"cmd", "go-remote"},
	{"cmd", "unclaim"},
	{"cmd", "enable-ssh"},
	{"cmd", "defer-reboot", "10"},
}

// Every subcommand of upstream's own pvcontrol script against a running
// appengine device: its exit code and the shape of what it prints (JSON
// structure with the values replaced by their types; text by its first
// word) are compared with a golden file. Run with -update-golden to
// rewrite it after a deliberate change.
func TestUpstreamPvcontrolEverySubcommand(t *testing.T) {
	isolated.Require(t)
	script, err := filepath.Abs("../testdata/upstream-tools/pvcontrol")
	if err != nil {
		t.Fatal(err)
	}
	dir := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "a", group: "app", cmd: sleeper},
		{name: "b", group: "app", cmd: sleeper},
	})
	d := startDevice(t, dir)
	d.waitContainers("up", 30*time.Second, statusIs(messages.StatusStarted, "a", "b"))
	var got strings.Builder
	for _, args := range upstreamCommands {
		out, code := runUpstream(t, script, d.sock(), args...)
		fmt.Fprintf(&got, "%s | exit %d | %s\n", strings.Join(args, " "), code, shapeOf(out))
		switch {
		case args[0] == "containers" && args[1] == "stop":
			// The stop answers at once; a start while STOPPING is refused.
			d.waitContainers("b stopped", 30*time.Second, statusIs(messages.StatusStopped, "b"))
		case args[0] == "containers" && (args[1] == "start" || args[1] == "restart"):
			d.waitContainers("b back", 30*time.Second, statusIs(messages.StatusStarted, "b"))
		}
	}
	golden := filepath.Join("testdata", "upstream-pvcontrol.golden")
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("upstream pvcontrol against the device differs from %s:\n got:\n%s\nwant:\n%s", golden, got.String(), want)
	}
}

// shapeOf is what the script printed, with the values that change from run
// to run left out: JSON as its structure with each value's type, other text
// as its first word (or "empty").
func shapeOf(out string) string {
	out = strings.TrimSpace(out)
	// The script prints curl's body and, for errors, the body on stderr
	// (merged here); a bug in its line 657 prints "[: missing ]" to stderr.
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, "missing `]'") && !strings.Contains(l, "missing ]") {
			lines = append(lines, l)
		}
	}
	out = strings.TrimSpace(strings.Join(lines, "\n"))
	if out == "" {
		return "empty"
	}
	var v any
	if err := json.Unmarshal([]byte(out), &v); err == nil {
		return shape(v)
	}
	return "text " + strings.Fields(out)[0]
}

func shape(v any) string {
	switch x := v.(type) {
	case map[string]any:
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range x {
				if !yield(k) {
					return
				}
			}
		})
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%q:%s", k, shape(x[k]))
		}
		return "{" + strings.Join(parts, ",") + "}"
	case []any:
		if len(x) == 0 {
			return "[]"
		}
		// Lists are shaped by their elements' union: their count varies.
		seen := map[string]bool{}
		var kinds []string
		for _, e := range x {
			if s := shape(e); !seen[s] {
				seen[s] = true
				kinds = append(kinds, s)
			}
		}
		slices.Sort(kinds)
		return "[" + strings.Join(kinds, "|") + "]"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
