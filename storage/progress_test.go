package storage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		s             Status
		percent       int
		final, failed bool
	}{
		{StatusNew, 0, false, false},
		{StatusQueued, 5, false, false},
		{StatusDownloading, 25, false, false},
		{StatusInProgress, 50, false, false},
		{StatusTesting, 75, false, false},
		{StatusUpdated, 100, true, false},
		{StatusDone, 100, true, false},
		{StatusWontGo, 100, true, true},
		{StatusError, 100, true, true},
	}
	for _, tc := range tests {
		t.Run(string(tc.s), func(t *testing.T) {
			if !tc.s.Known() || tc.s.Percent() != tc.percent || tc.s.Final() != tc.final || tc.s.Failed() != tc.failed {
				t.Errorf("known %v, percent %d, final %v, failed %v", tc.s.Known(), tc.s.Percent(), tc.s.Final(), tc.s.Failed())
			}
		})
	}
	if Status("DOWNLOADED").Known() {
		t.Error("unknown status known")
	}
}

func TestMessages(t *testing.T) {
	for got, want := range map[string]string{
		QueuedMsg(2, 10):    "Retried 2 of 10",
		DownloadMsg(1, 5):   "Downloading update artifacts, retry 1 of 5",
		SpaceMsg(1024, 512): "Space required 1024 B, available 512 B",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestProgressJSON(t *testing.T) {
	p := NewProgress(StatusDownloading, DownloadMsg(1, 3))
	p.Retries = 1
	p.Downloads = &Downloads{Total: DownloadTotal{ObjectName: "root.squashfs", TotalSize: 10, TotalDownloaded: 4, StartTime: 1, CurrentTime: 2}}
	data, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"status":"DOWNLOADING","status-msg":"Downloading update artifacts, retry 1 of 3","progress":25,"retries":1,` +
		`"downloads":{"total":{"object_name":"root.squashfs","object_id":"","total_size":10,"total_downloaded":4,"start_time":1,"current_time":2}}}`
	if string(data) != want {
		t.Fatalf("got  %s\nwant %s", data, want)
	}
	back, err := ParseProgress(data)
	if err != nil || back.Downloads == nil || *back.Downloads != *p.Downloads || back.Msg != p.Msg {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	// Upstream's file, with a field we do not know.
	up, err := ParseProgress([]byte(`{"status":"DONE","status-msg":"Factory revision","progress":100,"retries":0,"extra":[1]}`))
	if err != nil || up.Status != StatusDone || up.Msg != MsgFactory {
		t.Fatalf("upstream progress: %+v, %v", up, err)
	}
	for _, bad := range []string{``, `null`, `{}`, `{"status":"SOMETHING"}`, `{"status":"NEW","progress":101}`,
		`{"status":"NEW","retries":-1}`, `{"status":"NEW"} x`, `{"status":"NEW","progress":"5"}`} {
		if _, err := ParseProgress([]byte(bad)); !errors.Is(err, ErrBadProgress) {
			t.Errorf("ParseProgress(%q) = %v", bad, err)
		}
	}
}

func TestProgressFiles(t *testing.T) {
	l := newLayout(t)
	if err := l.WriteProgress("1", NewProgress(StatusNew, MsgPrepared)); !errors.Is(err, ErrNoTrail) {
		t.Fatalf("progress of a missing revision: %v", err)
	}
	// A trail upstream made: no .pv/ yet.
	if err := os.MkdirAll(filepath.Join(l.Trail("1"), ".pvr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReadProgress("1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no progress yet: %v", err)
	}
	for _, p := range []Progress{NewProgress(StatusInProgress, MsgReboot), NewProgress(StatusTesting, MsgTestingReboot)} {
		if err := l.WriteProgress("1", p); err != nil {
			t.Fatal(err)
		}
		if got, err := l.ReadProgress("1"); err != nil || got != p {
			t.Fatalf("read back %+v, %v", got, err)
		}
	}
	if l.Done("1") {
		t.Fatal("done before MarkDone")
	}
	if err := l.MarkDone("1"); err != nil || !l.Done("1") {
		t.Fatalf("MarkDone: %v", err)
	}
	if _, err := l.ReadCommitMsg("1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no commit message yet: %v", err)
	}
	if err := l.WriteCommitMsg("1", "a \"quoted\" message"); err != nil {
		t.Fatal(err)
	}
	if msg, err := l.ReadCommitMsg("1"); err != nil || msg != "a \"quoted\" message" {
		t.Fatalf("commit message %q, %v", msg, err)
	}
	if err := os.WriteFile(filepath.Join(l.Trail("1"), TrailProgress), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReadProgress("1"); !errors.Is(err, ErrBadProgress) {
		t.Fatalf("garbage progress: %v", err)
	}
	if _, err := l.ReadProgress("../1"); !errors.Is(err, ErrBadRevision) {
		t.Fatalf("bad rev: %v", err)
	}
	if tmps := dotEntries(t, filepath.Join(l.Trail("1"), ".pv")); len(tmps) != 0 {
		t.Errorf("temporaries left: %v", tmps)
	}
}
