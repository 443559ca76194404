//go:build integration

package logs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/isolated"
)

// On a full storage (an update's objects, say) a console log over
// PV_LOG_MAXSIZE could not be rotated: the copy failed with ENOSPC, the log
// stayed, and each attempt's temporary file woke the keeper for the next,
// some 25 000 walks a second. The log is emptied without a copy now, and
// the keeper does not spin.
func TestFullStorageEmptiesTheOversizedLog(t *testing.T) {
	isolated.Require(t)
	fs := t.TempDir()
	if err := unix.Mount("tmpfs", fs, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(fs, unix.MNT_DETACH) })
	dir := filepath.Join(fs, "logs")
	cur := filepath.Join(dir, "1")
	console := writeAged(t, dir, "1/app/console.log", 1536<<10, 0)
	fill, err := os.Create(filepath.Join(fs, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := fill.Write(buf); err != nil {
			break
		}
	}
	fill.Close()
	walks := newWalkCounter(t, dir)
	k := &Keeper{Dir: dir, Current: cur, Limits: Limits{MaxFile: 1 << 20, MaxDir: 16 << 20, Hysteresis: 4}, Log: quiet()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	n := 0
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		n += walks.take()
	}
	cancel()
	<-done
	if fi, _ := os.Stat(console); fi.Size() > k.Limits.MaxFile {
		t.Errorf("console.log stays at %d bytes, over its limit %d, on a full storage", fi.Size(), k.Limits.MaxFile)
	}
	if max := 2*int(2*time.Second/checkGap) + 4; n > max {
		t.Errorf("the keeper walked the tree %d times in 2 s on a full storage (at most %d expected)", n, max)
	}
}
