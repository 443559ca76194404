package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Errors of the object store that callers branch on. The control socket
// maps ErrBadChecksum to 422 and ErrNoSpace to 507.
var (
	// ErrBadObjectName is returned for an object name that is not a sha256
	// (64 lower-case hex digits).
	ErrBadObjectName = errors.New("bad object name")
	// ErrBadChecksum means an object's content does not hash to its name.
	ErrBadChecksum = errors.New("bad checksum")
	// ErrObjectMissing means an object is not in the store.
	ErrObjectMissing = errors.New("object missing")
	// ErrNoSpace means the storage ran out of space (or of quota) while
	// writing; whatever was being written has been removed.
	ErrNoSpace = errors.New("not enough disk space")
	// ErrReadOnly means the storage is mounted read-only (a filesystem
	// the kernel remounted read-only after an error, most often): nothing
	// was written. Callers report it as such, not as an internal error.
	ErrReadOnly = errors.New("storage is read-only")
	// ErrTooLarge means an object exceeded the size limit it was written
	// with; what was written has been removed.
	ErrTooLarge = errors.New("object too large")
)

// ObjectError is a problem with one object. Err is ErrObjectMissing,
// ErrBadChecksum or the I/O error met.
type ObjectError struct {
	SHA string
	// Got is what the content hashes to, for ErrBadChecksum.
	Got string
	Err error
}

func (e *ObjectError) Error() string {
	switch {
	case errors.Is(e.Err, ErrObjectMissing):
		return fmt.Sprintf("object %s is missing", e.SHA)
	case errors.Is(e.Err, ErrBadChecksum):
		return fmt.Sprintf("object %s: bad checksum: its content hashes to %s", e.SHA, e.Got)
	}
	return fmt.Sprintf("object %s: %v", e.SHA, e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// verifiedMode marks an object whose content was checked against its name.
//
// The mark is the file's permission bits, exactly 0444, because:
//   - it is crash-safe: the store sets it on the temporary file, after the
//     content is fsynced and before the rename that publishes the object, so
//     objects/<sha256> never exists with the mark and an unverified content;
//     a crash before the rename leaves only a temporary file, which Recover
//     removes;
//   - it is free to check at boot: the presence check is a stat, and the
//     stat returns the mode; no extra file, xattr or read;
//   - it belongs to the inode, so the hard links in the trails carry it and
//     it cannot disagree with the object the way a sidecar file could;
//   - every Linux filesystem keeps it (user xattrs are missing on tmpfs of
//     older kernels, for one).
//
// Upstream and older code write objects 0644, so their objects are not
// marked: the first boot that meets one hashes it once and marks it (see
// CheckObject). The mark is a record, not a protection: root can still
// write a 0444 file, and a file given mode 0444 by other means is trusted
// without being hashed. Check and VerifyFile hash regardless of the mark.
const verifiedMode fs.FileMode = 0o444

// Verified reports whether fi describes an object marked as verified.
func Verified(fi fs.FileInfo) bool {
	return fi.Mode().IsRegular() && fi.Mode().Perm() == verifiedMode
}

// IsSHA256 reports whether s is a valid object name: 64 lower-case hex
// digits.
func IsSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Object is where the object named sha is stored.
func (l Layout) Object(sha string) string { return filepath.Join(l.Objects(), sha) }

// unwritable marks err as ErrNoSpace when the kernel said the storage is
// full, as ErrReadOnly when it said the storage is read-only: the two
// causes a user can act on, which callers name rather than report an
// internal error.
func unwritable(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: %w", ErrReadOnly, err)
	}
	return err
}

// fault is a test hook called at the named steps of every write sequence;
// an error it returns fails the step. Tests use it to fail a step or to
// kill the process there. Nil outside tests.
var fault func(step string) error

func hit(step string) error {
	if fault == nil {
		return nil
	}
	return fault(step)
}

// ObjectWriter streams one object into the store: the bytes go to a
// temporary file in objects/ and are hashed on the way; Commit publishes the
// object only if the hash matches its name. Not safe for concurrent use.
type ObjectWriter struct {
	l     Layout
	sha   string
	limit int64
	f     *os.File
	h     hash.Hash
	n     int64
	err   error // the first write error; every later call returns it
	done  bool
}

// CreateObject starts writing the object named sha. limit, when positive,
// is the largest size accepted. The caller must end with Commit or Abort;
// until then a temporary file ".<sha>.tmp*" exists in objects/ (Recover
// removes those a crash left).
func (l Layout) CreateObject(sha string, limit int64) (*ObjectWriter, error) {
	if !IsSHA256(sha) {
		return nil, fmt.Errorf("create object %q: %w", sha, ErrBadObjectName)
	}
	if err := os.MkdirAll(l.Objects(), 0o755); err != nil {
		return nil, fmt.Errorf("create object %s: %w", sha, unwritable(err))
	}
	f, err := os.CreateTemp(l.Objects(), "."+sha+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("create object %s: %w", sha, unwritable(err))
	}
	return &ObjectWriter{l: l, sha: sha, limit: limit, f: f, h: sha256.New()}, nil
}

// Write appends p to the object. After an error the object cannot be
// committed; the temporary file is removed at once.
func (w *ObjectWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, fmt.Errorf("write object %s: already committed or aborted", w.sha)
	}
	if w.limit > 0 && w.n+int64(len(p)) > w.limit {
		return 0, w.fail(fmt.Errorf("write object %s: more than %d bytes: %w", w.sha, w.limit, ErrTooLarge))
	}
	if err := hit("object.write"); err != nil {
		return 0, w.fail(fmt.Errorf("write object %s: %w", w.sha, unwritable(err)))
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, w.fail(fmt.Errorf("write object %s: %w", w.sha, unwritable(err)))
	}
	return n, nil
}

// Size is the number of bytes written so far.
func (w *ObjectWriter) Size() int64 { return w.n }

func (w *ObjectWriter) fail(err error) error {
	w.err = err
	w.Abort()
	return err
}

// Abort removes the temporary file. It does nothing after Commit, so it
// can be deferred.
func (w *ObjectWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	name := w.f.Name()
	w.f.Close()
	os.Remove(name)
}

// Commit checks the content against the object's name and publishes it as
// objects/<sha256>, marked verified, replacing any object of that name (an
// unverified or corrupt copy, or the same content put concurrently). On a
// bad checksum it returns an *ObjectError wrapping ErrBadChecksum and
// nothing is left behind.
//
// Order: fsync the content, mark it, rename it into place, fsync objects/.
// A crash before the rename leaves only the temporary file; after it, the
// object is whole and its content is durable, so the mark never lies.
func (w *ObjectWriter) Commit() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return fmt.Errorf("commit object %s: already committed or aborted", w.sha)
	}
	if got := hex.EncodeToString(w.h.Sum(nil)); got != w.sha {
		w.Abort()
		return &ObjectError{SHA: w.sha, Got: got, Err: ErrBadChecksum}
	}
	err := hit("object.sync")
	if err == nil {
		err = w.f.Sync()
	}
	if err == nil {
		err = w.f.Chmod(verifiedMode)
	}
	if err != nil {
		w.Abort()
		return fmt.Errorf("commit object %s: %w", w.sha, unwritable(err))
	}
	name := w.f.Name()
	if err := w.f.Close(); err != nil {
		w.done = true
		os.Remove(name)
		return fmt.Errorf("commit object %s: %w", w.sha, unwritable(err))
	}
	w.done = true
	err = hit("object.rename")
	if err == nil {
		err = os.Rename(name, w.l.Object(w.sha))
	}
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("commit object %s: %w", w.sha, unwritable(err))
	}
	if err := SyncDir(w.l.Objects()); err != nil {
		return fmt.Errorf("commit object %s: %w", w.sha, err)
	}
	return nil
}

// PutObject stores the content read from r as the object named sha, as
// CreateObject and Commit do. When a verified object of that name is
// already there it returns existed == true without reading r (an HTTP
// handler drains the body itself); an unverified one is hashed first and
// replaced only if corrupt.
func (l Layout) PutObject(sha string, r io.Reader, limit int64) (existed bool, err error) {
	if !IsSHA256(sha) {
		return false, fmt.Errorf("put object %q: %w", sha, ErrBadObjectName)
	}
	if err := CheckObject(l.Object(sha), sha); err == nil {
		return true, nil
	}
	w, err := l.CreateObject(sha, limit)
	if err != nil {
		return false, err
	}
	defer w.Abort()
	if _, err := io.Copy(w, r); err != nil {
		if w.err != nil {
			return false, w.err
		}
		return false, fmt.Errorf("put object %s: read: %w", sha, err)
	}
	return false, w.Commit()
}

// CheckObject is the check a boot makes of the object file at path, named
// sha: it must be there, and a file marked verified is trusted without
// reading it. An unmarked file (written by upstream or by older code) is
// hashed once; if it matches, it is fsynced and marked so that later boots
// trust it; a failure to mark (a read-only storage) is not an error.
//
// Errors are *ObjectError wrapping ErrObjectMissing, ErrBadChecksum or the
// I/O error.
func CheckObject(path, sha string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &ObjectError{SHA: sha, Err: ErrObjectMissing}
	}
	if err != nil {
		return &ObjectError{SHA: sha, Err: err}
	}
	if Verified(fi) {
		return nil
	}
	return verify(path, sha, true)
}

// VerifyFile hashes the file at path and compares it with sha, whatever
// its mark says, and changes nothing. It is the check of `pantavisor
// validate` and of Check.
func VerifyFile(path, sha string) error { return verify(path, sha, false) }

// Verify hashes the stored object named sha, ignoring its mark.
func (l Layout) Verify(sha string) error {
	if !IsSHA256(sha) {
		return fmt.Errorf("verify object %q: %w", sha, ErrBadObjectName)
	}
	return VerifyFile(l.Object(sha), sha)
}

func verify(path, sha string, mark bool) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &ObjectError{SHA: sha, Err: ErrObjectMissing}
	}
	if err != nil {
		return &ObjectError{SHA: sha, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return &ObjectError{SHA: sha, Err: err}
	}
	if !fi.Mode().IsRegular() {
		return &ObjectError{SHA: sha, Err: fmt.Errorf("not a regular file (%s)", fi.Mode().Type())}
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return &ObjectError{SHA: sha, Err: fmt.Errorf("read: %w", err)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return &ObjectError{SHA: sha, Got: got, Err: ErrBadChecksum}
	}
	if mark {
		// The content must be durable before the mark is: an old writer
		// may not have fsynced it, and a mark that outlives a lost write
		// would make a later boot trust a torn file.
		if f.Sync() == nil {
			f.Chmod(verifiedMode)
		}
	}
	return nil
}

// ObjectInfo is one stored object.
type ObjectInfo struct {
	SHA  string
	Size int64
}

// ListObjects lists the objects in the store (temporary files and other
// names that are not a sha256 are skipped), as GET /objects shows them.
func (l Layout) ListObjects() ([]ObjectInfo, error) {
	entries, err := os.ReadDir(l.Objects())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list objects: %w", err)
	}
	var out []ObjectInfo
	for _, e := range entries {
		if !IsSHA256(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, ObjectInfo{SHA: e.Name(), Size: fi.Size()})
	}
	return out, nil
}

// isObjectTemp reports whether name, in objects/, is a temporary file: ours
// (".<sha>.tmp*") or upstream's ("<sha>.tmp").
func isObjectTemp(name string) bool {
	if rest, ok := strings.CutPrefix(name, "."); ok {
		sha, _, ok := strings.Cut(rest, ".tmp")
		return ok && IsSHA256(sha)
	}
	sha, ok := strings.CutSuffix(name, ".tmp")
	return ok && IsSHA256(sha)
}
