package lxcconf

import (
	"errors"
	"io"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/pantavisor/pv/spec"
)

// mapOpener serves included files from a map, as the trail's opener serves
// a container's files of the revision.
func mapOpener(files map[string]string) Opener {
	return func(name string) (io.ReadCloser, error) {
		s, ok := files[name]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return io.NopCloser(strings.NewReader(s)), nil
	}
}

func TestParseIncludes(t *testing.T) {
	files := map[string]string{
		"common.conf":   lines("lxc.tty.max = 4", "lxc.include = sub/more.conf"),
		"sub/more.conf": lines("lxc.environment = A=1", "lxc.no_new_privs = 1"),
		"warn.conf":     lines("lxc.bogus = 1"),
		"bad.conf":      lines("lxc.tty.max = x"),
		"seccomp.conf":  lines("lxc.seccomp.notify.proxy = unix:/run/proxy"),
		"loop-a.conf":   lines("lxc.include = loop-b.conf"),
		"loop-b.conf":   lines("lxc.include = ./loop-a.conf"),
		"self.conf":     lines("lxc.include = self.conf"),
	}
	// A chain d0 -> d1 -> ... deeper than allowed.
	for i := 0; i < maxIncludeDepth+1; i++ {
		files["d"+string(rune('a'+i))+".conf"] = lines("lxc.include = d" + string(rune('a'+i+1)) + ".conf")
	}
	files["d"+string(rune('a'+maxIncludeDepth+1))+".conf"] = lines("lxc.tty.max = 1")

	ok := []struct {
		name  string
		in    string
		want  *spec.Container
		warns []string
	}{
		{
			name: "nested includes read in place, later lines win",
			in:   lines("lxc.tty.max = 1", "lxc.include = common.conf", "lxc.pty.max = 2"),
			want: &spec.Container{TTYMax: 4, PTYMax: 2, Env: []string{"A=1"}, NoNewPrivileges: true},
		},
		{
			name:  "a warning in an included file is placed on the include line",
			in:    lines("lxc.tty.max = 1", "lxc.include = warn.conf"),
			want:  &spec.Container{TTYMax: 1},
			warns: []string{"line 2: lxc.include: warn.conf line 1: lxc.bogus: unknown key"},
		},
		{
			name: "unenforceable key in an included file names both",
			in:   lines("lxc.include = seccomp.conf"),
			want: &spec.Container{Unenforceable: []string{
				"lxc.include (line 1): seccomp.conf line 1: lxc.seccomp.notify.proxy: seccomp notifications need a notification proxy, which this runtime does not run",
			}},
		},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, warns, err := ParseIncludes(strings.NewReader(tc.in), mapOpener(files))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			var ws []string
			for _, w := range warns {
				ws = append(ws, w.String())
			}
			if !reflect.DeepEqual(ws, tc.warns) {
				t.Errorf("warnings %q, want %q", ws, tc.warns)
			}
		})
	}

	bad := []struct {
		name, in, want string
	}{
		{"absolute path", "lxc.include = /usr/share/lxc/config/common.conf\n", `line 1: lxc.include: "/usr/share/lxc/config/common.conf" is a host path`},
		{"leaves the directory", "lxc.include = sub/../../x.conf\n", `line 1: lxc.include: "sub/../../x.conf" leaves the container's directory`},
		{"dot", "lxc.include = .\n", `line 1: lxc.include: "." leaves`},
		{"empty", "lxc.include =\n", `line 1: lxc.include: names no file`},
		{"missing", "\nlxc.include = none.conf\n", `line 2: lxc.include: open "none.conf": file does not exist`},
		{"loop", "lxc.include = loop-a.conf\n", `line 1: lxc.include: loop-a.conf line 1: loop-b.conf line 1: lxc.include: include loop: loop-a.conf -> loop-b.conf -> loop-a.conf`},
		{"self", "lxc.include = self.conf\n", `include loop: self.conf -> self.conf`},
		{"too deep", "lxc.include = da.conf\n", `includes nested deeper than 8`},
		{"error inside", "lxc.include = bad.conf\n", `line 1: lxc.include: bad.conf line 1: lxc.tty.max:`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseIncludes(strings.NewReader(tc.in), mapOpener(files))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to contain %q", err, tc.want)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Key != "lxc.include" {
				t.Errorf("not a SyntaxError on lxc.include: %#v", err)
			}
		})
	}
}

// Without an opener (no revision to read from) an include still refuses the
// container rather than being skipped.
func TestParseIncludeWithoutOpener(t *testing.T) {
	c, _, err := Parse(strings.NewReader("lxc.include = common.conf\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Unenforceable) != 1 || !strings.HasPrefix(c.Unenforceable[0], "lxc.include (line 1)") {
		t.Errorf("Unenforceable = %q", c.Unenforceable)
	}
}

// commentReader yields n bytes of '#' (one LXC comment line without a
// newline) and counts what was read.
type commentReader struct{ n, read int }

func (r *commentReader) Read(b []byte) (int, error) {
	if r.read >= r.n {
		return 0, io.EOF
	}
	k := min(len(b), r.n-r.read)
	for i := range b[:k] {
		b[i] = '#'
	}
	r.read += k
	return k, nil
}

// The top-level config is bounded as an included file is: a run.json
// "config" that names a big object (the root volume, say) must not make
// PID 1 read it whole, as one line in memory.
func TestParseIncludesBoundsTheConfig(t *testing.T) {
	r := &commentReader{n: 16 * maxIncludeSize}
	_, _, err := ParseIncludes(r, nil)
	if err == nil || !strings.Contains(err.Error(), "lxc config is larger than 1048576 bytes") {
		t.Errorf("a %d-byte config: error %v, want it refused for its size", r.n, err)
	}
	if r.read > maxIncludeSize+bufSlack {
		t.Errorf("read %d bytes of the config, want at most about %d", r.read, maxIncludeSize)
	}
	at := &commentReader{n: maxIncludeSize}
	if _, _, err := ParseIncludes(at, nil); err != nil {
		t.Errorf("a config of exactly %d bytes: %v", at.n, err)
	}
}

// bufSlack is what a reader may take beyond what it parses (bufio's buffer).
const bufSlack = 4096

// countingOpener serves files as mapOpener does and counts the bytes read
// from them.
func countingOpener(files map[string]string, read *int) Opener {
	return func(name string) (io.ReadCloser, error) {
		s, ok := files[name]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return io.NopCloser(&countingReader{r: strings.NewReader(s), n: read}), nil
	}
}

type countingReader struct {
	r io.Reader
	n *int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	*c.n += n
	return n, err
}

// A few kilobytes of revision that include each other over and over (a
// "billion laughs") are read up to maxIncludedTotal and refused, with one
// error, instead of being read a hundred million times: LoadTrail runs
// at every boot and for every LOCAL_RUN, which holds the command lock
// meanwhile.
func TestParseIncludesBoundsRepeatedIncludes(t *testing.T) {
	files := map[string]string{
		"b.conf": strings.Repeat("lxc.include = c.conf\n", 100),
		"c.conf": strings.Repeat("lxc.include = d.conf\n", 100),
		"d.conf": strings.Repeat("lxc.mount.entry = /a b none bind 0 0\n", 100),
	}
	read := 0
	c, _, err := ParseIncludes(strings.NewReader(strings.Repeat("lxc.include = b.conf\n", 100)), countingOpener(files, &read))
	if err == nil || !strings.Contains(err.Error(), "add up to more than 8388608 bytes") {
		t.Fatalf("spec %v, err %v: want the includes refused for their total size", c != nil, err)
	}
	if n := strings.Count(err.Error(), "add up to"); n != 1 {
		t.Errorf("the budget is reported %d times, want once: %v", n, err)
	}
	if max := maxIncludedTotal + bufSlack; read > max {
		t.Errorf("read %d bytes of included files, want at most %d", read, max)
	}
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 1 || se.Key != "lxc.include" {
		t.Errorf("not a SyntaxError on the first include line: %#v", err)
	}

	// A seccomp profile named over and over counts too.
	files["p.seccomp"] = "2\ndenylist\n" + strings.Repeat("# "+strings.Repeat("x", 1000)+"\n", 1000)
	in := strings.Repeat("lxc.seccomp.profile = p.seccomp\n", 20)
	if _, _, err := ParseIncludes(strings.NewReader(in), mapOpener(files)); err == nil || !strings.Contains(err.Error(), "add up to more than") {
		t.Errorf("a profile read 20 times: err %v, want it refused for the total size", err)
	}

	// A file too large to include, included over and over: what is read
	// of it before it is refused counts as well.
	files["big.conf"] = strings.Repeat("#", 4*maxIncludeSize)
	read = 0
	_, _, err = ParseIncludes(strings.NewReader(strings.Repeat("lxc.include = big.conf\n", 1000)), countingOpener(files, &read))
	if err == nil || !strings.Contains(err.Error(), "add up to more than") {
		t.Errorf("a file too large included 1000 times: err %v, want the budget reached", err)
	}
	if max := maxIncludedTotal + bufSlack; read > max {
		t.Errorf("read %d bytes of a file too large, want at most %d", read, max)
	}
}

// The budget leaves room for the deepest chain allowed of the largest
// files allowed, each read once.
func TestParseIncludesDeepestLargestChain(t *testing.T) {
	files := map[string]string{}
	comment := strings.Repeat("#", maxIncludeSize-len("lxc.include = f0.conf\n")-1) + "\n"
	for i := 0; i < maxIncludeDepth; i++ {
		body := comment
		if i+1 < maxIncludeDepth {
			body += "lxc.include = f" + string(rune('0'+i+1)) + ".conf\n"
		} else {
			body += strings.Repeat("#", len("lxc.include = f0.conf\n")-1) + "\n"
		}
		files["f"+string(rune('0'+i))+".conf"] = body
	}
	c, _, err := ParseIncludes(strings.NewReader("lxc.include = f0.conf\nlxc.tty.max = 3\n"), mapOpener(files))
	if err != nil {
		t.Fatal(err)
	}
	if c.TTYMax != 3 {
		t.Errorf("TTYMax %d, want 3", c.TTYMax)
	}
}
