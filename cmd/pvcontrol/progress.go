package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Progress of an upload or a download is shown on a terminal only, and only for one
// that lasts: the first line comes after progressEvery, then at most one
// per progressEvery.
const progressEvery = 250 * time.Millisecond

// progressWriter is where progress goes: stderr when it is a
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

// progress rewrites one line of w, "pvcontrol: uploading NAME: 42% (1.2
// of 2.9 MiB)", at most once per progressEvery, as bytes are counted.
type progress struct {
	w          io.Writer
	verb, name string
	size, done int64
	now        func() time.Time
	last       time.Time
	// shown: a line is on the terminal; ended: no more will be.
	shown, ended bool
}

func newProgress(w io.Writer, verb, name string, size int64, now func() time.Time) *progress {
	return &progress{w: w, verb: verb, name: name, size: size, now: now, last: now()}
}

// count adds n bytes moved; the line goes once all size bytes are.
func (p *progress) count(n int) {
	p.done += int64(n)
	if p.ended {
		return
	}
	if t := p.now(); t.Sub(p.last) >= progressEvery {
		p.last = t
		p.shown = true
		const mib = 1 << 20
		fmt.Fprintf(p.w, "\rpvcontrol: %s %s: %3d%% (%.1f of %.1f MiB)\x1b[K",
			p.verb, p.name, p.done*100/max(p.size, 1), float64(p.done)/mib, float64(p.size)/mib)
	}
	if p.done >= p.size {
		// All moved: the line goes before the answer is waited for,
		// so that what follows (-v's lines) starts on a clean one.
		p.finish()
	}
}

// finish erases the progress line, if one was shown, and shows no more.
func (p *progress) finish() {
	p.ended = true
	if p.shown {
		p.shown = false
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

// progressReader counts what is read through it: an upload's body.
type progressReader struct {
	r io.Reader
	*progress
}

func newProgressReader(r io.Reader, w io.Writer, name string, size int64, now func() time.Time) *progressReader {
	return &progressReader{r: r, progress: newProgress(w, "uploading", name, size, now)}
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.count(n)
	return n, err
}

// downloadProgress counts what is written through it: an answer's body,
// whose length the client tells it (expect) before the first byte. An
// answer without a length shows none.
type downloadProgress struct {
	w, to io.Writer
	name  string
	now   func() time.Time
	p     *progress
}

func (d *downloadProgress) expect(size int64) {
	d.p = newProgress(d.to, "downloading", d.name, size, d.now)
}

func (d *downloadProgress) Write(b []byte) (int, error) {
	n, err := d.w.Write(b)
	if d.p != nil {
		d.p.count(n)
	}
	return n, err
}

func (d *downloadProgress) finish() {
	if d.p != nil {
		d.p.finish()
	}
}

// download is the sink of an answer's body that shows its progress on a
// terminal, unless the body goes to that terminal (a line rewritten among
// the bytes would garble both): done erases the line.
func (e *env) download(sink io.Writer, name string) (w io.Writer, done func()) {
	if f, ok := e.stdout.(*os.File); e.progress == nil || (ok && isTerminal(f)) {
		return sink, func() {}
	}
	d := &downloadProgress{w: sink, to: e.progress, name: name, now: time.Now}
	return d, d.finish
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
