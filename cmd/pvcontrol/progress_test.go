package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProgressReader: the progress line is rewritten at most once per
// progressEvery, none for an upload quicker than that, and erased as soon
// as the whole body is read.
func TestProgressReader(t *testing.T) {
	const mib = 1 << 20
	t0 := time.Unix(1000, 0)
	clock := t0
	tick := func(d time.Duration) func() time.Time {
		return func() time.Time { clock = clock.Add(d); return clock }
	}
	for _, c := range []struct {
		name string
		step time.Duration // the clock's advance per call
		want string
	}{
		{"slow", 150 * time.Millisecond,
			"\rpvcontrol: uploading obj:  50% (2.0 of 4.0 MiB)\x1b[K" +
				"\rpvcontrol: uploading obj: 100% (4.0 of 4.0 MiB)\x1b[K" +
				"\r\x1b[K"},
		{"quick", time.Millisecond, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock = t0
			var out bytes.Buffer
			p := newProgressReader(io.LimitReader(zeros{}, 4*mib), &out, "obj", 4*mib, tick(c.step))
			buf := make([]byte, mib)
			for {
				if _, err := p.Read(buf); err != nil {
					break
				}
			}
			// All sent, the line is erased already: finish adds nothing.
			if out.String() != c.want {
				t.Errorf("progress %q, want %q", out.String(), c.want)
			}
			p.finish()
			if out.String() != c.want {
				t.Errorf("progress %q, want %q", out.String(), c.want)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// TestProgressOnlyOnTerminal: progress goes to a terminal, never to a
// pipe, a file or a buffer, and never with --json.
func TestProgressOnlyOnTerminal(t *testing.T) {
	file, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, s := range []io.Writer{&bytes.Buffer{}, file, w} {
		if got := progressWriter(s, false); got != nil {
			t.Errorf("progress to %T %v", s, s)
		}
	}
	// The master side of a pseudo-terminal is a terminal too.
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer pty.Close()
	if got := progressWriter(pty, false); got != pty {
		t.Errorf("no progress on a terminal")
	}
	if got := progressWriter(pty, true); got != nil {
		t.Errorf("progress on a terminal with --json")
	}
}

// TestDownloadProgress: a download's body, its length told before its
// first byte, shows the same line as an upload; one without a length (a
// chunked answer) shows none; and none goes to the terminal the body is
// printed on.
func TestDownloadProgress(t *testing.T) {
	const mib = 1 << 20
	clock := time.Unix(1000, 0)
	tick := func() time.Time { clock = clock.Add(150 * time.Millisecond); return clock }
	body := bytes.Repeat([]byte{'x'}, 4*mib)
	for _, c := range []struct {
		name, head string
		want       string
	}{
		{"with a length", "HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n",
			"\rpvcontrol: downloading obj:"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400000\r\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.head + string(body)
			if c.want == "" {
				in += "\r\n0\r\n\r\n"
			}
			var out, line bytes.Buffer
			d := &downloadProgress{w: &out, to: &line, name: "obj", now: tick}
			// Read in slices of 1 MiB at most: the line is rewritten
			// as they come.
			br := bufio.NewReaderSize(strings.NewReader(in), mib)
			res, _, err := readResponse(br, "GET", d)
			d.finish()
			if err != nil || res.streamed != 4*mib || out.Len() != 4*mib {
				t.Fatalf("streamed %v %v, body %d bytes", res, err, out.Len())
			}
			got := line.String()
			switch {
			case c.want == "" && got != "":
				t.Errorf("progress %q for a body of no told length", got)
			case c.want != "" && (!strings.HasPrefix(got, c.want) || !strings.HasSuffix(got, "\r\x1b[K")):
				t.Errorf("progress %q, want lines %q… then the line erased", got, c.want)
			}
		})
	}
	// The body printed on a terminal: no line among it.
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer pty.Close()
	var sink bytes.Buffer
	e := &env{stdout: pty, progress: &bytes.Buffer{}}
	if w, _ := e.download(&sink, "obj"); w != io.Writer(&sink) {
		t.Errorf("progress shown on the terminal the body goes to")
	}
	e.stdout = &sink
	if w, _ := e.download(&sink, "obj"); w == io.Writer(&sink) {
		t.Errorf("no progress for a body saved elsewhere")
	}
}
