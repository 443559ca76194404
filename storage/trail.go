package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Errors of the trails that callers branch on.
var (
	// ErrTrailExists is returned when installing a revision that is
	// already there.
	ErrTrailExists = errors.New("revision already exists")
	// ErrBadState is returned for a state JSON that cannot be installed:
	// not a JSON object, or with a key that cannot be a file of the trail.
	ErrBadState = errors.New("bad state json")
)

// Temporary directories in trails/: a revision being installed, and one
// being removed. Recover removes both kinds.
const (
	installPrefix = ".install-"
	removePrefix  = ".remove-"
)

// Refs is what a state JSON refers to, as the store sees it: the keys that
// name objects and the inline JSON documents that upstream expands into the
// trail as files.
type Refs struct {
	// Objects maps each state key naming an object to its sha256.
	Objects map[string]string
	// JSONs maps each ".json" key holding an inline document to it.
	JSONs map[string]json.RawMessage
}

// ParseRefs reads the references of a state JSON. It is deliberately
// looser than state.Parse: any string value that is a sha256 names an
// object, so that a garbage collection keeps every object a state could
// mean, valid or not. It refuses what the store cannot lay out: a document
// that is not a JSON object, and keys that are not clean relative paths or
// that would land in the trail's own .pv/ or .pvr/.
func ParseRefs(data []byte) (Refs, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return Refs{}, fmt.Errorf("parse refs: %w: %w", ErrBadState, err)
	}
	if top == nil {
		return Refs{}, fmt.Errorf("parse refs: %w: not a JSON object", ErrBadState)
	}
	r := Refs{Objects: map[string]string{}, JSONs: map[string]json.RawMessage{}}
	for key, raw := range top {
		if key == "#spec" || strings.HasPrefix(key, "_sigs/") {
			continue
		}
		var s string
		isObject := len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil && IsSHA256(s)
		// A .json key whose value is not a sha256 is an inline document,
		// whatever JSON value it is, as upstream files it.
		if !isObject && !strings.HasSuffix(key, ".json") {
			continue
		}
		if err := checkKey(key); err != nil {
			return Refs{}, fmt.Errorf("parse refs: %w", err)
		}
		if isObject {
			r.Objects[key] = s
		} else {
			r.JSONs[key] = raw
		}
	}
	return r, nil
}

// checkTree refuses refs whose files cannot all be laid out: a key below
// another key, which would have to be a file and a directory at once.
// Found here, it is ErrBadState before anything is written, not an I/O
// error halfway through the trail.
func (r Refs) checkTree() error {
	files := make(map[string]bool, len(r.Objects)+len(r.JSONs))
	for key := range r.Objects {
		files[key] = true
	}
	for key := range r.JSONs {
		files[key] = true
	}
	for _, key := range slices.Sorted(maps.Keys(files)) {
		for dir := path.Dir(key); dir != "."; dir = path.Dir(dir) {
			if files[dir] {
				return fmt.Errorf("%w: key %q is below key %q, a file of the trail", ErrBadState, key, dir)
			}
		}
	}
	return nil
}

// maxNameLen is NAME_MAX, the longest file name the kernel takes.
const maxNameLen = 255

// MaxKeyLen is the longest state key a trail takes. Every path made of
// a key (the trail's file, the temporary trail's, a container's config
// overlay under the run directory) must fit PATH_MAX, 4096 bytes with
// its NUL; half of it is left to the directories before the key.
const MaxKeyLen = 2048

// checkKey refuses a state key that cannot be a file of the trail.
func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.ContainsRune(key, 0) {
		return fmt.Errorf("%w: key %q is not a relative path", ErrBadState, key)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: key %.64q... is %d bytes, longer than %d", ErrBadState, key, len(key), MaxKeyLen)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: key %q is not a clean path", ErrBadState, key)
		}
		if len(seg) > maxNameLen {
			return fmt.Errorf("%w: key %q has a path segment longer than %d bytes", ErrBadState, key, maxNameLen)
		}
	}
	first, _, _ := strings.Cut(key, "/")
	if first == ".pv" || first == ".pvr" {
		return fmt.Errorf("%w: key %q would overwrite the trail's metadata", ErrBadState, key)
	}
	return nil
}

// InstallOptions are the optional parts of a revision being installed.
type InstallOptions struct {
	// Progress, when set, is written as the trail's .pv/progress.
	Progress *Progress
	// CommitMsg, when not empty, is written as .pv/commitmsg.
	CommitMsg string
}

// InstallTrail writes revision rev: trails/<rev>/.pvr/json (stateJSON as
// given), .pvr/config naming the object store as upstream does, every
// object hard-linked at its key (copied where the filesystem cannot link),
// every inline ".json" document expanded as a file, and the files of opt.
//
// Every object must already be in the store (PutObject): a missing one is
// an *ObjectError wrapping ErrObjectMissing, a corrupt unmarked one
// ErrBadChecksum. An existing revision is refused with ErrTrailExists;
// RemoveTrail it first to replace it. A bad rev is ErrBadRevision, a state
// that cannot be laid out ErrBadState, a full storage ErrNoSpace.
//
// Order: everything is written and fsynced in a temporary directory
// trails/.install-*, the directory tree is fsynced, then renamed to its
// name and the parent fsynced. A crash leaves either no trails/<rev> (and
// a temporary directory that Recover removes) or the whole trail.
func (l Layout) InstallTrail(rev string, stateJSON []byte, opt InstallOptions) error {
	final := l.Trail(rev)
	tmp, err := l.prepareTrail(rev, stateJSON, opt, false)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // no-op once renamed
	if err := hit("install.rename"); err != nil {
		return fmt.Errorf("install trail %s: %w", rev, unwritable(err))
	}
	if err := os.Rename(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return fmt.Errorf("install trail %s: %w", rev, ErrTrailExists)
		}
		return fmt.Errorf("install trail %s: %w", rev, unwritable(err))
	}
	return l.syncTrailParents(rev, "install")
}

// ReplaceTrail is InstallTrail for a revision that may exist: the new
// trail replaces the old one whole (MAKE_FACTORY's new revision "0"). The
// old trail goes with its progress, commit message and links; its logs and
// revision disks stay.
//
// Order: the new trail is written and fsynced in trails/.install-*, as
// InstallTrail does, then swapped with the old one in a single
// renameat2(RENAME_EXCHANGE) and the parent fsynced; the old trail, now
// under the temporary name, is deleted. A crash leaves either the old
// trail or the new one at trails/<rev>, never none or a mix; the
// temporary directory left is removed by Recover. When the filesystem
// cannot exchange (EINVAL, ENOSYS), or there is no old trail, the new
// trail is published by a plain rename after the old one is moved away:
// there a crash between the two renames leaves no trails/<rev>.
func (l Layout) ReplaceTrail(rev string, stateJSON []byte, opt InstallOptions) error {
	final := l.Trail(rev)
	tmp, err := l.prepareTrail(rev, stateJSON, opt, true)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // the old trail once exchanged
	if err := hit("install.rename"); err != nil {
		return fmt.Errorf("replace trail %s: %w", rev, unwritable(err))
	}
	err = exchange(tmp, final)
	switch {
	case err == nil:
		if err := l.syncTrailParents(rev, "replace"); err != nil {
			return err
		}
		if err := hit("replace.delete"); err != nil {
			return fmt.Errorf("replace trail %s: %w", rev, err)
		}
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("replace trail %s: remove the old trail: %w", rev, err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		// No old trail: a plain install.
	case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENOSYS), errors.Is(err, syscall.EOPNOTSUPP):
		if err := l.RemoveTrail(rev); err != nil && !errors.Is(err, ErrNoTrail) {
			return fmt.Errorf("replace trail %s: %w", rev, err)
		}
	default:
		return fmt.Errorf("replace trail %s: %w", rev, unwritable(err))
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("replace trail %s: %w", rev, unwritable(err))
	}
	return l.syncTrailParents(rev, "replace")
}

// prepareTrail checks a revision to be installed and writes its trail,
// fsynced, in a fresh temporary directory trails/.install-*, which it
// returns. Unless replace, an existing revision is ErrTrailExists.
func (l Layout) prepareTrail(rev string, stateJSON []byte, opt InstallOptions, replace bool) (string, error) {
	verb := "install"
	if replace {
		verb = "replace"
	}
	if err := CheckRev(rev); err != nil {
		return "", fmt.Errorf("%s trail: %w", verb, err)
	}
	refs, err := ParseRefs(stateJSON)
	if err == nil {
		err = refs.checkTree()
	}
	if err != nil {
		return "", fmt.Errorf("%s trail %s: %w", verb, rev, err)
	}
	for _, key := range slices.Sorted(maps.Keys(refs.Objects)) {
		sha := refs.Objects[key]
		if err := CheckObject(l.Object(sha), sha); err != nil {
			return "", fmt.Errorf("%s trail %s: %s: %w", verb, rev, key, err)
		}
	}
	final := l.Trail(rev)
	if _, err := os.Lstat(final); err == nil && !replace {
		return "", fmt.Errorf("install trail %s: %w", rev, ErrTrailExists)
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", fmt.Errorf("%s trail %s: %w", verb, rev, unwritable(err))
	}
	tmp, err := os.MkdirTemp(l.Trails(), installPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("%s trail %s: %w", verb, rev, unwritable(err))
	}
	err = l.fillTrail(tmp, stateJSON, refs, opt)
	if err == nil {
		err = syncTree(tmp)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("%s trail %s: %w", verb, rev, err)
	}
	return tmp, nil
}

// syncTrailParents makes a rename into trails/<rev> durable: the new
// entry first, then (for locals/) the temporary's departure from trails/.
func (l Layout) syncTrailParents(rev, verb string) error {
	dir := filepath.Dir(l.Trail(rev))
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("%s trail %s: %w", verb, rev, err)
	}
	if dir != l.Trails() {
		if err := SyncDir(l.Trails()); err != nil {
			return fmt.Errorf("%s trail %s: %w", verb, rev, err)
		}
	}
	return nil
}

// fillTrail writes a trail's content into dir, each file fsynced.
func (l Layout) fillTrail(dir string, stateJSON []byte, refs Refs, opt InstallOptions) error {
	if err := writeNew(filepath.Join(dir, TrailJSON), stateJSON); err != nil {
		return err
	}
	if err := hit("install.json"); err != nil {
		return unwritable(err)
	}
	objects := l.Objects()
	if abs, err := filepath.Abs(objects); err == nil {
		objects = abs // upstream's tools read it from anywhere
	}
	cfg, err := json.Marshal(map[string]string{"ObjectsDir": objects})
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if err := writeNew(filepath.Join(dir, TrailConfig), cfg); err != nil {
		return err
	}
	copies := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(refs.Objects)) {
		if err := hit("install.link"); err != nil {
			return unwritable(err)
		}
		if err := linkObject(l.Object(refs.Objects[key]), filepath.Join(dir, filepath.FromSlash(key)), copies); err != nil {
			return fmt.Errorf("link %s: %w", key, err)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(refs.JSONs)) {
		if err := writeNew(filepath.Join(dir, filepath.FromSlash(key)), refs.JSONs[key]); err != nil {
			return err
		}
	}
	if opt.Progress != nil {
		data, err := opt.Progress.Marshal()
		if err != nil {
			return err
		}
		if err := writeNew(filepath.Join(dir, TrailProgress), data); err != nil {
			return err
		}
	}
	if opt.CommitMsg != "" {
		if err := writeNew(filepath.Join(dir, TrailCommit), []byte(opt.CommitMsg)); err != nil {
			return err
		}
	}
	return nil
}

// writeNew creates path (and its directories) with data, fsynced. It
// refuses to replace a file: inside a fresh directory a clash means two
// keys of the state map to one path.
func writeNew(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return unwritable(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return unwritable(err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, unwritable(err))
	}
	return nil
}

// linkObject makes dst a hard link to the object src, or a copy where the
// filesystem refuses the link (another filesystem, too many links, or no
// hard links at all). A copy is fsynced and carries the verified mark,
// since it is made from a verified object. copies holds the copies made
// for this trail so far, by object: a later key of the same object is a
// link to its copy where that is allowed. Without it a state naming one
// object under many keys made a copy per key once the object had its
// filesystem's most links (65 000 on ext4): a few megabytes of state
// asked for terabytes, written until the storage was full.
func linkObject(src, dst string, copies map[string]string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return unwritable(err)
	}
	err := linkFile(src, dst)
	if err == nil || !(errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EMLINK) || errors.Is(err, syscall.EPERM)) {
		return unwritable(err)
	}
	if c, ok := copies[src]; ok {
		if err := linkFile(c, dst); err == nil {
			return nil
		}
	}
	if err := copyObject(src, dst); err != nil {
		return err
	}
	copies[src] = dst
	return nil
}

// linkFile is os.Link; tests make it fail as a filesystem would.
var linkFile = os.Link

// copyObject copies the object src to the new file dst, fsynced and
// marked verified.
func copyObject(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return unwritable(err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if err == nil {
		err = out.Chmod(verifiedMode)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return unwritable(err)
}

// syncTree fsyncs every directory under root, deepest first, so that all
// the entries created in it are durable.
func syncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync tree %s: %w", root, err)
	}
	if err := hit("install.sync"); err != nil {
		return unwritable(err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := SyncDir(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

// RemoveTrail deletes revision rev's trail with everything in it (its
// progress and the hard links to its objects; the objects stay in the
// store until GC). It does not ask whether the revision is running,
// committed or being tried: the caller must. Returns ErrNoTrail when there
// is none.
//
// Order: the trail is first renamed to a temporary trails/.remove-* and
// that rename made durable, then deleted; a crash never leaves a trail
// that looks whole with files missing.
func (l Layout) RemoveTrail(rev string) error {
	if err := CheckRev(rev); err != nil {
		return fmt.Errorf("remove trail: %w", err)
	}
	final := l.Trail(rev)
	if _, err := os.Lstat(final); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove trail %s: %w", rev, ErrNoTrail)
		}
		return fmt.Errorf("remove trail %s: %w", rev, err)
	}
	// A fresh name: 64 random bits make a clash with another removal
	// (which os.Rename would refuse, not overwrite) practically impossible.
	tmp := filepath.Join(l.Trails(), fmt.Sprintf("%s%016x", removePrefix, rand.Uint64()))
	if err := os.Rename(final, tmp); err != nil {
		return fmt.Errorf("remove trail %s: %w", rev, err)
	}
	if err := SyncDir(filepath.Dir(final)); err != nil {
		return fmt.Errorf("remove trail %s: %w", rev, err)
	}
	if filepath.Dir(final) != l.Trails() {
		if err := SyncDir(l.Trails()); err != nil {
			return fmt.Errorf("remove trail %s: %w", rev, err)
		}
	}
	if err := hit("remove.delete"); err != nil {
		return fmt.Errorf("remove trail %s: %w", rev, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove trail %s: %w", rev, err)
	}
	return nil
}

// ReadState returns revision rev's state JSON.
func (l Layout) ReadState(rev string) ([]byte, error) {
	if err := CheckRev(rev); err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	data, err := ReadFileMax(filepath.Join(l.Trail(rev), TrailJSON), MaxStateJSON)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read state %s: %w: %w", rev, ErrNoTrail, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", rev, err)
	}
	return data, nil
}

// Revisions lists the revisions in trails/ as upstream's GET /steps does:
// every directory name but "current" and "locals", then "locals/<name>"
// for each local revision. The store's temporary directories (names
// starting with ".") are not revisions. Numeric names come first, in
// numeric order, then the others in lexical order.
func (l Layout) Revisions() ([]string, error) {
	var revs []string
	for _, sub := range []string{"", "locals"} {
		entries, err := os.ReadDir(filepath.Join(l.Trails(), sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list revisions: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") || !e.IsDir() {
				continue
			}
			if sub == "" && (name == "current" || name == "locals") {
				continue
			}
			if sub != "" {
				name = sub + "/" + name
			}
			revs = append(revs, name)
		}
	}
	sort.Slice(revs, func(i, j int) bool { return revLess(revs[i], revs[j]) })
	return revs, nil
}

func revLess(a, b string) bool {
	na, ea := strconv.ParseUint(a, 10, 64)
	nb, eb := strconv.ParseUint(b, 10, 64)
	switch {
	case ea == nil && eb == nil:
		return na < nb
	case ea == nil:
		return true
	case eb == nil:
		return false
	}
	return a < b
}

// Step is what GET /steps shows of a revision.
type Step struct {
	Name string
	// Date is when the trail directory last changed.
	Date      time.Time
	CommitMsg string
	// Progress is nil when the revision has none, or none readable.
	Progress *Progress
}

// Steps describes every revision, in the order of Revisions.
func (l Layout) Steps() ([]Step, error) {
	revs, err := l.Revisions()
	if err != nil {
		return nil, err
	}
	steps := make([]Step, 0, len(revs))
	for _, rev := range revs {
		fi, err := os.Stat(l.Trail(rev))
		if err != nil {
			continue // removed meanwhile
		}
		s := Step{Name: rev, Date: fi.ModTime()}
		s.CommitMsg, _ = l.ReadCommitMsg(rev)
		if p, err := l.ReadProgress(rev); err == nil {
			s.Progress = &p
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// SetCurrent points trails/current at revision rev, as upstream does for
// the running revision. The link is replaced atomically (a new link renamed
// over the old).
func (l Layout) SetCurrent(rev string) error {
	if err := CheckRev(rev); err != nil {
		return fmt.Errorf("set current: %w", err)
	}
	tmp := filepath.Join(l.Trails(), ".current.tmp")
	os.Remove(tmp)
	if err := os.Symlink(rev, tmp); err != nil {
		return fmt.Errorf("set current %s: %w", rev, unwritable(err))
	}
	if err := os.Rename(tmp, l.Current()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("set current %s: %w", rev, err)
	}
	return SyncDir(l.Trails())
}

// CurrentRev is the revision trails/current points at, "" when none.
func (l Layout) CurrentRev() string {
	target, err := os.Readlink(l.Current())
	if err != nil || CheckRev(target) != nil {
		return ""
	}
	return target
}
