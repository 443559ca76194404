package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Progress of an upload is shown on a terminal only, and only for one
// that lasts: the first line comes after progressEvery, then at most one
// per progressEvery.
const progressEvery = 250 * time.Millisecond

// progressWriter is where upload progress goes: stderr when it is a
// terminal and the output is not --json, else nil (none).
func progressWriter(stderr io.Writer, json bool) io.Writer {
	f, ok := stderr.(*os.File)
	if !ok || json || !isTerminal(f) {
		return nil
	}
	return f
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressReader counts what is read through it and rewrites one line of
// w, "pvcontrol: uploading NAME: 42% (1.2 of 2.9 MiB)", at most once per
// progressEvery.
type progressReader struct {
	r          io.Reader
	w          io.Writer
	name       string
	size, done int64
	now        func() time.Time
	last       time.Time
	// shown: a line is on the terminal; ended: no more will be.
	shown, ended bool
}

func newProgressReader(r io.Reader, w io.Writer, name string, size int64, now func() time.Time) *progressReader {
	return &progressReader{r: r, w: w, name: name, size: size, now: now, last: now()}
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.ended {
		return n, err
	}
	if t := p.now(); t.Sub(p.last) >= progressEvery {
		p.last = t
		p.shown = true
		const mib = 1 << 20
		fmt.Fprintf(p.w, "\rpvcontrol: uploading %s: %3d%% (%.1f of %.1f MiB)\x1b[K",
			p.name, p.done*100/max(p.size, 1), float64(p.done)/mib, float64(p.size)/mib)
	}
	if p.done >= p.size {
		// Sent: the line goes before the answer is waited for, so that
		// what follows (-v's lines) starts on a clean one.
		p.finish()
	}
	return n, err
}

// finish erases the progress line, if one was shown, and shows no more.
func (p *progressReader) finish() {
	p.ended = true
	if p.shown {
		p.shown = false
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

// upload is client.upload of an object, with its progress on a terminal.
func (e *env) upload(path, name string, r io.Reader, size int64) (*response, error) {
	if e.progress == nil {
		return e.c.upload("PUT", path, name, r, size, uploadTimeout)
	}
	p := newProgressReader(r, e.progress, name, size, time.Now)
	defer p.finish()
	return e.c.upload("PUT", path, name, p, size, uploadTimeout)
}
