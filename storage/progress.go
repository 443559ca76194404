package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Status is the state of an update, as upstream reports it in
// trails/<rev>/.pv/progress and to the hub.
type Status string

// The statuses, in the order an update goes through them.
const (
	StatusNew         Status = "NEW"
	StatusQueued      Status = "QUEUED"
	StatusDownloading Status = "DOWNLOADING"
	StatusInProgress  Status = "INPROGRESS"
	StatusTesting     Status = "TESTING"
	StatusUpdated     Status = "UPDATED"
	StatusDone        Status = "DONE"
	StatusWontGo      Status = "WONTGO"
	StatusError       Status = "ERROR"
)

// statusPercent is each status's progress percentage, as upstream sets it.
var statusPercent = map[Status]int{
	StatusNew: 0, StatusQueued: 5, StatusDownloading: 25, StatusInProgress: 50,
	StatusTesting: 75, StatusUpdated: 100, StatusDone: 100, StatusWontGo: 100, StatusError: 100,
}

// Known reports whether s is one of upstream's statuses.
func (s Status) Known() bool { _, ok := statusPercent[s]; return ok }

// Percent is the progress percentage upstream reports with s.
func (s Status) Percent() int { return statusPercent[s] }

// Final reports whether an update in status s is over: UPDATED, DONE,
// WONTGO or ERROR.
func (s Status) Final() bool {
	return s == StatusUpdated || s == StatusDone || s == StatusWontGo || s == StatusError
}

// Failed reports whether an update in status s is over and failed: WONTGO
// or ERROR.
func (s Status) Failed() bool { return s == StatusWontGo || s == StatusError }

// The status messages, upstream's exact strings (keys of
// update_progress.c). The ones with verbs are formats; see the functions
// below them.
const (
	MsgPrepared         = "Update not yet installed"
	MsgInstalled        = "Update ready to be run"
	MsgQueued           = "Retried %d of %d"
	MsgTry              = "Trying new revision"
	MsgTransition       = "Transitioning to new revision without rebooting"
	MsgReboot           = "Rebooting"
	MsgUpdated          = "Update finished, revision not set as rollback point"
	MsgDone             = "Update finished, revision set as rollback point"
	MsgFactory          = "Factory revision"
	MsgBadChecksum      = "Object validation went wrong"
	MsgHubNotReachable  = "Hub not reachable"
	MsgHubNotStable     = "Hub communication not stable"
	MsgStatusGoalFailed = "Status goal not reached"
	MsgContainerFailed  = "A container could not be started"
	MsgInternalError    = "Internal error"
	MsgNoProcessing     = "Max update processing retries reached"
	MsgNoDownload       = "Max download update retries reached"
	MsgNoStateJSON      = "State JSON not found"
	MsgNoParse          = "State JSON has bad format"
	MsgTestingReboot    = "Awaiting to set rollback point if update is stable"
	MsgTestingNonReboot = "Awaiting to see if update is stable"
	MsgDownloadProgress = "Downloading update artifacts, retry %d of %d"
	MsgRolledBack       = "Unexpected rollback"
	// MsgSpace is upstream's "Space required %jd B, available %jd B" in
	// Go's verbs; the text is the same.
	MsgSpace = "Space required %d B, available %d B"
)

// QueuedMsg is MsgQueued for retry n of max.
func QueuedMsg(n, max int) string { return fmt.Sprintf(MsgQueued, n, max) }

// DownloadMsg is MsgDownloadProgress for retry n of max.
func DownloadMsg(n, max int) string { return fmt.Sprintf(MsgDownloadProgress, n, max) }

// SpaceMsg is MsgSpace for the bytes required and available.
func SpaceMsg(required, available int64) string { return fmt.Sprintf(MsgSpace, required, available) }

// Progress is an update's progress, trails/<rev>/.pv/progress. Fields are
// in upstream's order.
type Progress struct {
	Status    Status     `json:"status"`
	Msg       string     `json:"status-msg"`
	Progress  int        `json:"progress"`
	Retries   int        `json:"retries"`
	Downloads *Downloads `json:"downloads,omitempty"`
	// Logs is the tail (at most 4 KiB upstream) of the update's log.
	Logs string `json:"logs,omitempty"`
}

// Downloads reports the transfer of an update's objects.
type Downloads struct {
	Total DownloadTotal `json:"total"`
}

// DownloadTotal is the transfer so far. Times are Unix seconds.
type DownloadTotal struct {
	ObjectName      string `json:"object_name"`
	ObjectID        string `json:"object_id"`
	TotalSize       int64  `json:"total_size"`
	TotalDownloaded int64  `json:"total_downloaded"`
	StartTime       int64  `json:"start_time"`
	CurrentTime     int64  `json:"current_time"`
}

// NewProgress is status s with message msg and s's percentage.
func NewProgress(s Status, msg string) Progress {
	return Progress{Status: s, Msg: msg, Progress: s.Percent()}
}

// ErrBadProgress is returned for a progress file that is not one.
var ErrBadProgress = errors.New("bad progress")

// ParseProgress reads a progress JSON. Unknown fields are ignored (upstream
// versions add some); an unknown status, a percentage outside 0..100 or a
// negative retry count is ErrBadProgress.
func ParseProgress(data []byte) (Progress, error) {
	var p Progress
	if err := json.Unmarshal(data, &p); err != nil {
		return Progress{}, fmt.Errorf("parse progress: %w: %w", ErrBadProgress, err)
	}
	switch {
	case !p.Status.Known():
		return Progress{}, fmt.Errorf("parse progress: %w: unknown status %q", ErrBadProgress, p.Status)
	case p.Progress < 0 || p.Progress > 100:
		return Progress{}, fmt.Errorf("parse progress: %w: progress %d out of 0..100", ErrBadProgress, p.Progress)
	case p.Retries < 0:
		return Progress{}, fmt.Errorf("parse progress: %w: negative retries", ErrBadProgress)
	}
	return p, nil
}

// Marshal encodes p as upstream writes it.
func (p Progress) Marshal() ([]byte, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode progress: %w", err)
	}
	return data, nil
}

// metaFile is the path of a file in rev's trail, after checking rev.
func (l Layout) metaFile(rev, name string) (string, error) {
	if err := CheckRev(rev); err != nil {
		return "", err
	}
	return filepath.Join(l.Trail(rev), filepath.FromSlash(name)), nil
}

// writeMeta replaces a file of rev's .pv/ atomically, creating .pv/ if
// needed. The trail must exist: writing progress for a revision that was
// never installed is ErrNoTrail.
func (l Layout) writeMeta(rev, name string, data []byte) error {
	path, err := l.metaFile(rev, name)
	if err != nil {
		return err
	}
	if _, err := os.Stat(l.Trail(rev)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNoTrail, err)
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return unwritable(err)
		}
		if err := SyncDir(filepath.Dir(dir)); err != nil {
			return err
		}
	}
	return unwritable(WriteFileAtomic(path, data, 0o644))
}

// WriteProgress replaces revision rev's progress, atomically (temp file,
// fsync, rename, fsync the directory): a crash leaves the old progress or
// the new one.
func (l Layout) WriteProgress(rev string, p Progress) error {
	data, err := p.Marshal()
	if err != nil {
		return fmt.Errorf("write progress %s: %w", rev, err)
	}
	if err := l.writeMeta(rev, TrailProgress, data); err != nil {
		return fmt.Errorf("write progress %s: %w", rev, err)
	}
	return nil
}

// ReadProgress reads revision rev's progress; fs.ErrNotExist when it has
// none, ErrBadProgress when it is not readable as one.
func (l Layout) ReadProgress(rev string) (Progress, error) {
	path, err := l.metaFile(rev, TrailProgress)
	if err != nil {
		return Progress{}, fmt.Errorf("read progress: %w", err)
	}
	data, err := ReadFileMax(path, MaxProgressJSON)
	if err != nil {
		return Progress{}, fmt.Errorf("read progress %s: %w", rev, err)
	}
	p, err := ParseProgress(data)
	if err != nil {
		return Progress{}, fmt.Errorf("read progress %s: %w", rev, err)
	}
	return p, nil
}

// WriteCommitMsg replaces revision rev's commit message, atomically.
// Limits on its length are the caller's.
func (l Layout) WriteCommitMsg(rev, msg string) error {
	if err := l.writeMeta(rev, TrailCommit, []byte(msg)); err != nil {
		return fmt.Errorf("write commit message %s: %w", rev, err)
	}
	return nil
}

// ReadCommitMsg reads revision rev's commit message; fs.ErrNotExist when
// it has none.
func (l Layout) ReadCommitMsg(rev string) (string, error) {
	path, err := l.metaFile(rev, TrailCommit)
	if err != nil {
		return "", fmt.Errorf("read commit message: %w", err)
	}
	data, err := ReadFileMax(path, MaxCommitMsg)
	if err != nil {
		return "", fmt.Errorf("read commit message %s: %w", rev, err)
	}
	return string(data), nil
}

// MarkDone writes revision rev's .pv/done flag (an empty file), durably.
// Upstream keeps it for older versions; the bootloader's pv_rev is what
// says which revision is committed.
func (l Layout) MarkDone(rev string) error {
	if err := l.writeMeta(rev, TrailDone, nil); err != nil {
		return fmt.Errorf("mark done %s: %w", rev, err)
	}
	return nil
}

// Done reports whether revision rev has its done flag.
func (l Layout) Done(rev string) bool {
	path, err := l.metaFile(rev, TrailDone)
	if err != nil {
		return false
	}
	_, err = os.Stat(path)
	return err == nil
}
