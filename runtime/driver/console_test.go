package driver

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A container's console log is in its log directory, which a container
// may have bind-mounted: what it put at console.log before a start (a
// symlink to the storage's state JSON, a FIFO) is what the init's stdout
// was opened on, by root.

// A symlink at console.log was followed: the init's output was appended
// to the file it named. The link is removed now, and the log made anew.
func TestConsoleLogIsNotOpenedThroughALink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "json")
	if err := os.WriteFile(target, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	console := filepath.Join(dir, "app", "console.log")
	os.MkdirAll(filepath.Dir(console), 0o755)
	if err := os.Symlink(target, console); err != nil {
		t.Fatal(err)
	}
	f, err := openConsole(console, nil)
	if err == nil {
		f.WriteString("the container's output\n")
		f.Close()
	}
	if got, _ := os.ReadFile(target); string(got) != "{}" {
		t.Errorf("the file the link names was written: %q", got)
	}
	if err != nil {
		t.Fatalf("the console log was not made anew: %v", err)
	}
	if fi, err := os.Lstat(console); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("console.log is not a regular file now: %v %v", fi, err)
	}
}

// A FIFO at console.log: the open for writing waited for a reader, for
// ever, and the container's start with it. It is replaced by a log now.
func TestConsoleLogFIFODoesNotHangTheStart(t *testing.T) {
	console := filepath.Join(t.TempDir(), "console.log")
	if err := unix.Mkfifo(console, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		f, err := openConsole(console, nil)
		if err == nil {
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the console log was not made anew: %v", err)
		}
		if fi, err := os.Lstat(console); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("console.log is not a regular file now: %v %v", fi, err)
		}
	case <-time.After(2 * time.Second):
		// Let the stuck open go, so the test binary can end.
		if r, err := os.OpenFile(console, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
			<-done
			r.Close()
		}
		t.Fatal("opening a console log that is a FIFO still waits after 2s")
	}
}

// A regular console log is appended to, and a missing one made 0644.
func TestConsoleLogAppends(t *testing.T) {
	console := filepath.Join(t.TempDir(), "app", "console.log")
	for _, line := range []string{"one\n", "two\n"} {
		f, err := openConsole(console, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(line)
		f.Close()
	}
	if got, _ := os.ReadFile(console); string(got) != "one\ntwo\n" {
		t.Errorf("console log holds %q", got)
	}
	if fi, err := os.Stat(console); err != nil || fi.Mode().Perm() != 0o644&^umask() {
		t.Errorf("console log: %v %v", fi, err)
	}
}

func umask() os.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return os.FileMode(m)
}
