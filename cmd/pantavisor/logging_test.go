package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/config"
)

// pantavisor's own log moves to the running revision's log directory at a
// non-reboot update: what is logged after the move is in the new file,
// nothing is lost or written twice, and writers racing the move are safe.
func TestOwnLogMovesWithTheRevision(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "1", "pantavisor", "pantavisor.log")
	second := filepath.Join(dir, "locals", "b", "pantavisor", "pantavisor.log")
	var stderr bytes.Buffer
	log, sink, err := newLogger(&stderr, first, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	log.Info("before the update")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				log.Info("racing")
				time.Sleep(time.Millisecond)
			}
		}
	}()
	if err := sink.Move(second); err != nil {
		t.Fatal(err)
	}
	log.Info("after the update")
	close(stop)
	wg.Wait()
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	if !strings.Contains(string(a), "before the update") || strings.Contains(string(a), "after the update") {
		t.Errorf("first file:\n%s", a)
	}
	if !strings.Contains(string(b), "after the update") || strings.Contains(string(b), "before the update") {
		t.Errorf("second file:\n%s", b)
	}
	lines := strings.Count(string(a), "\n") + strings.Count(string(b), "\n")
	if want := strings.Count(stderr.String(), "\n"); lines != want {
		t.Errorf("%d lines in the files, %d on stderr", lines, want)
	}
}

// PV_LOG_LEVEL is read at each record: user-meta turns debug logs on and
// off while the device runs, as GET /config2 shows it at once. It was
// copied at boot.
func TestLogLevelFollowsTheConfiguration(t *testing.T) {
	cfg := config.New()
	level := &logLevel{}
	level.cfg.Store(cfg)
	var stderr bytes.Buffer
	log, _, err := newLogger(&stderr, "", level)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("before")
	if _, err := cfg.SetMeta(config.PVLogLevel, "4"); err != nil {
		t.Fatal(err)
	}
	log.Debug("on")
	if _, err := cfg.SetMeta(config.PVLogLevel, "3"); err != nil {
		t.Fatal(err)
	}
	log.Debug("off")
	got := stderr.String()
	if !strings.Contains(got, "msg=on") || strings.Contains(got, "msg=before") || strings.Contains(got, "msg=off") {
		t.Errorf("log %q: want the debug record written while PV_LOG_LEVEL was 4 only", got)
	}
	if (&logLevel{verbose: true}).Level() != slog.LevelDebug {
		t.Error("-v without a configuration: not debug")
	}
}

// A container with its revision's log directory bind-mounted can put a
// symlink at pantavisor/pantavisor.log: at the next boot (or the next
// non-reboot update into that revision) pantavisor appended its own log,
// as root, to whatever the link named, the storage's state JSON say.
// The link is replaced by the log now.
func TestOwnLogIsNotWrittenThroughALink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "json")
	if err := os.WriteFile(target, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "1", "pantavisor", "pantavisor.log")
	os.MkdirAll(filepath.Dir(file), 0o755)
	if err := os.Symlink(target, file); err != nil {
		t.Fatal(err)
	}
	log, sink, err := newLogger(&bytes.Buffer{}, file, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	log.Info("booted")
	if got, _ := os.ReadFile(target); string(got) != "{}" {
		t.Errorf("the file the link names was written: %q", got)
	}
	if got, err := os.ReadFile(file); err != nil || !strings.Contains(string(got), "booted") {
		t.Errorf("pantavisor's log holds %q (%v)", got, err)
	}
}
