package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pantavisor's own log moves to the running revision's log directory at a
// non-reboot update: what is logged after the move is in the new file,
// nothing is lost or written twice, and writers racing the move are safe.
func TestOwnLogMovesWithTheRevision(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "1", "pantavisor", "pantavisor.log")
	second := filepath.Join(dir, "locals", "b", "pantavisor", "pantavisor.log")
	var stderr bytes.Buffer
	log, sink, err := newLogger(&stderr, first, 0)
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
