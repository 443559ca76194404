package main

import (
	"bytes"
	"io"
	"os"
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
