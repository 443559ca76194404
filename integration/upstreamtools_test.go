//go:build integration

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/messages"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// upstreamGolden holds, for each subcommand of upstream's pvcontrol run
// against a running appengine device, its exit code and the shape of its
// output (shapeOf).
const upstreamGolden = "testdata/upstream-pvcontrol-device.golden"

// Every subcommand of upstream's pvcontrol script that works without
// Pantacor Hub, run by the script itself (real curl over the unix socket)
// against a running appengine device with two containers: exit codes and
// output shapes as the golden file has them. Not run here: cmd poweroff
// and reboot (they end the device; ctrl's table tests cover them).
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
	d.waitContainers("a and b up", 30*time.Second, statusIs(messages.StatusStarted, "a", "b"))

	work := t.TempDir()
	object := []byte("an object put by upstream's pvcontrol\n")
	sum := sha256.Sum256(object)
	sha := hex.EncodeToString(sum[:])
	objFile := filepath.Join(work, "object")
	if err := os.WriteFile(objFile, object, 0o644); err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(work, "rev.tgz")
	if err := revtest.Export(buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "a", group: "app", cmd: sleeper},
	}), tgz); err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(work, "state.json")

	var golden strings.Builder
	run := func(args ...string) (string, int) {
		t.Helper()
		out, code := runUpstream(t, script, d.sock(), args...)
		// One command is pending at a time: upstream's 503 (exit 75)
		// while the previous one runs.
		for deadline := time.Now().Add(10 * time.Second); code == 75 && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			out, code = runUpstream(t, script, d.sock(), args...)
		}
		shown := strings.Join(args, " ")
		shown = strings.ReplaceAll(strings.ReplaceAll(shown, work, "WORK"), sha, "SHA")
		fmt.Fprintf(&golden, "$ pvcontrol %s\n[exit %d]\n%s\n", shown, code, shapeOf(strings.ReplaceAll(out, script, "pvcontrol")))
		return out, code
	}

	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"bogus"}, {"ls", "--help"}, {"ls", "extra"},
		{"ls"}, {"list"}, {"containers", "ls"}, {"groups", "ls"},
		// From the host, which is no container: upstream's answer to a
		// platform that does not expect signals.
		{"signal", "ready"}, {"signal", "alive"}, {"signal", "bogus"},
		{"buildinfo"},
		{"conf", "ls"}, {"configuration", "list"}, {"config", "ls"},
		{"graph", "ls"},
		{"daemons", "ls"}, {"daemons", "start", "nosuch"}, {"daemons", "stop", "nosuch"}, {"daemons", "restart", "nosuch"},
		{"devmeta", "ls"}, {"devmeta", "save", "probe.key", "probe-value"}, {"devmeta", "upload", "probe.two", "two"},
		{"devmeta", "list"}, {"devmeta", "delete", "probe.key"}, {"devmeta", "delete", "probe.key"},
		{"devmeta", "save", "probe.empty"}, {"devmeta", "delete", "probe.two"},
		{"usrmeta", "ls"}, {"usrmeta", "save", "probe.key", "probe-value"}, {"usrmeta", "list"},
		{"usrmeta", "delete", "probe.key"}, {"usrmeta", "delete", "probe.key"}, {"usrmeta", "save", "probe.empty"},
		{"objects", "ls"}, {"objects", "put", objFile, sha}, {"objects", "get", sha},
		{"-f", filepath.Join(work, "object.out"), "objects", "get", sha}, {"-f", filepath.Join(work, "ls.out"), "ls"},
		{"objects", "get", strings.Repeat("0", 64)}, {"objects", "put", objFile, strings.Repeat("0", 64)},
		{"steps", "ls"}, {"steps", "get", "current"}, {"steps", "show-progress", "current"},
		{"steps", "get", "0"}, {"steps", "get", "locals/nosuch"}, {"steps", "show-progress", "locals/nosuch"},
	} {
		run(args...)
	}
	state, code := run("steps", "get", "current")
	if code != 0 {
		t.Fatalf("steps get current: %d %s", code, state)
	}
	if err := os.WriteFile(stateFile, []byte(state), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"steps", "put", stateFile, "locals/copy"}, {"steps", "show-progress", "locals/copy"},
		{"-m", "a message", "steps", "put", stateFile, "locals/copy2"},
		{"steps", "install", tgz, "locals/tgz"}, {"steps", "show-progress", "locals/tgz"},
		{"steps", "ls"},
		{"cmd", "run", "locals/nosuch"}, {"cmd", "run-commit", "locals/nosuch"},
		{"cmd", "run-gc"}, {"storage", "gc"},
		{"cmd", "enable-ssh"}, {"cmd", "disable-ssh"},
		{"cmd", "go-remote"}, {"cmd", "defer-reboot", "5"},
		{"cmd", "unclaim"}, {"cmd", "run"}, {"cmd", "bogus"},
		{"containers", "stop", "nosuch"}, {"containers", "start"},
	} {
		run(args...)
	}
	// Container lifecycle, each step waited for: a start while the
	// container still stops is refused, as upstream refuses it.
	run("containers", "stop", "b")
	d.waitContainers("b stopped", 20*time.Second, statusIs(messages.StatusStopped, "b"))
	run("containers", "start", "b")
	pid := d.waitContainers("b started", 20*time.Second, statusIs(messages.StatusStarted, "b"))["b"].Pid
	run("containers", "restart", "b")
	d.waitContainers("b restarted", 20*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["b"].Status == messages.StatusStarted && m["b"].Pid != pid
	})
	run("containers", "ls")
	// Last: it runs revision 0 anew, which restarts the device.
	run("cmd", "make-factory")

	got := golden.String()
	if *updateGolden {
		if err := os.WriteFile(upstreamGolden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(upstreamGolden)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("upstream pvcontrol against the device differs from %s (-update rewrites it):\n%s", upstreamGolden, lineDiff(string(want), got))
	}
}

// volatile are the values shapeOf replaces in text output.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`[0-9a-f]{64}`), "<sha>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
	{regexp.MustCompile(`/tmp/[^\s"]*`), "<tmp>"},
	{regexp.MustCompile(`\d+`), "N"},
}

// shapeOf is what the golden file keeps of an output: for JSON, its
// shape (keys and value types, an array's distinct element shapes; the
// messages of upstream's {"Error": ...} kept as they are); for text, the
// text with volatile values replaced; for Go's build information
// (buildinfo), the kinds of its lines.
func shapeOf(out string) string {
	s := strings.TrimSpace(out)
	var v any
	if s != "" && json.Unmarshal([]byte(s), &v) == nil {
		b, err := json.Marshal(shape(v))
		if err != nil {
			panic(err)
		}
		return "json " + string(b)
	}
	if strings.HasPrefix(s, "go\t") {
		var kinds []string
		for _, l := range strings.Split(s, "\n") {
			k, _, _ := strings.Cut(l, "\t")
			if len(kinds) == 0 || kinds[len(kinds)-1] != k {
				kinds = append(kinds, k)
			}
		}
		return "buildinfo lines: " + strings.Join(kinds, " ")
	}
	for _, r := range volatile {
		s = r.re.ReplaceAllString(s, r.with)
	}
	return "text " + strings.ReplaceAll(s, "\n", "\n     ")
}

func shape(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["Error"]; ok && len(v) == 1 {
			return v
		}
		out := map[string]any{}
		for k, e := range v {
			out[k] = shape(e)
		}
		return out
	case []any:
		seen := map[string]bool{}
		out := []any{}
		for _, e := range v {
			sh := shape(e)
			b, _ := json.Marshal(sh)
			if !seen[string(b)] {
				seen[string(b)] = true
				out = append(out, sh)
			}
		}
		sort.Slice(out, func(i, j int) bool {
			a, _ := json.Marshal(out[i])
			b, _ := json.Marshal(out[j])
			return string(a) < string(b)
		})
		return out
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

// lineDiff lists the lines of got that differ from want's, by line.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
