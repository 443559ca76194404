//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
)

// A container printing 50 MB to its console: the log directory stays
// within PV_LOG_DIR_MAXSIZE, and the console log goes on after rotation.
func TestLogDirStaysUnderItsLimit(t *testing.T) {
	flood := `/bin/sh "-c" "dd if=/dev/zero bs=65536 count=800 2>/dev/null | tr '\000' x; echo; echo FLOOD-DONE; exit 0"`
	dir := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{{name: "flood", group: "app", cmd: flood}})
	const limit = 4 << 20
	d := startDeviceEnv(t, dir, []string{"PV_LOG_MAXSIZE=1048576", "PV_LOG_DIR_MAXSIZE=4194304"})
	logs := filepath.Join(dir, "logs")
	// The end of the flood is the container's exit: its console may have
	// lost its last lines to a sweep (the flooding log is the one a sweep
	// truncates first).
	d.waitContainers("the flood's end", 90*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["flood"].LastExit != nil
	})
	if e := d.containers(); len(e) != 1 || e[0].LastExit == nil || e[0].LastExit.Code != 0 {
		t.Fatalf("the flood did not end cleanly: %+v", e)
	}
	var total int64
	deadline := time.Now().Add(5 * time.Second)
	for {
		total = 0
		filepath.Walk(logs, func(_ string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				total += fi.Size()
			}
			return nil
		})
		if total <= limit || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if total > limit {
		t.Fatalf("log dir holds %d bytes after a 50 MB flood, limit %d", total, limit)
	}
	// Whether console.log.1 exists at the end is timing: a sweep over the
	// limit removes rotated copies first, and the flood may end between
	// that and the next rotation.
}
