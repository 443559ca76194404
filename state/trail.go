package state

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/pantavisor/pv/state/lxcconf"
	"github.com/pantavisor/pv/storage"
)

// TrailJSON is where a revision's state lives inside its trail directory.
const TrailJSON = storage.TrailJSON

// ReadError means a state or one of its files could not be read at all, as
// opposed to being read and found invalid.
type ReadError struct {
	Path string
	Err  error
}

func (e *ReadError) Error() string { return fmt.Sprintf("read %s: %v", e.Path, e.Err) }
func (e *ReadError) Unwrap() error { return e.Err }

// LoadTrail reads and validates the revision in a trail directory
// (<storage>/trails/<rev> or <storage>/trails/locals/<name>). Beyond Parse it
// checks every object: present in <storage>/objects/<sha256> (or hard-linked
// into the trail as upstream does), and it translates each container's
// lxc.container.conf into the container's spec. Problems with objects are
// validation errors; an unreadable .pvr/json is a *ReadError.
//
// A boot does not hash the objects: one marked verified by the store (see
// storage.CheckObject) is trusted on a stat, since it was hashed when it
// was written. An unmarked one (put there by upstream or by older code) is
// hashed once and, if it matches, marked, which changes its mode to 0444:
// LoadTrail writes to the storage then. With opt.VerifyObjects every object
// is hashed whatever its mark and nothing is changed, as `pantavisor
// validate` needs.
func LoadTrail(dir string, opt Options) (*State, error) {
	jsonPath := filepath.Join(dir, TrailJSON)
	data, err := storage.ReadFileMax(jsonPath, storage.MaxStateJSON)
	if err != nil {
		return nil, &ReadError{Path: jsonPath, Err: err}
	}
	st, perr := Parse(data, opt)
	objectsDir := storage.TrailObjects(dir)
	var c collector
	checkObjects(&c, st, dir, objectsDir, opt.VerifyObjects)
	if perr == nil && len(c.errs) == 0 {
		readLXC(&c, st, dir, objectsDir)
	}
	if len(c.errs) == 0 {
		return st, perr
	}
	all := append(Problems(perr), c.errs...)
	sortProblems(all)
	st.Warnings = append(st.Warnings, c.warns...)
	return st, &InvalidError{Problems: all}
}

// ObjectPath returns where the object named by key is stored: the content
// store when it holds it, else the trail's own copy.
func ObjectPath(trailDir, objectsDir, key, sha string) string {
	p := filepath.Join(objectsDir, sha)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return filepath.Join(trailDir, filepath.FromSlash(key))
}

func checkObjects(c *collector, st *State, trailDir, objectsDir string, hash bool) {
	checked := map[string]error{} // one object may back several keys
	for _, key := range slices.Sorted(maps.Keys(st.Objects)) {
		sha := st.Objects[key]
		err, done := checked[sha]
		if !done {
			path := ObjectPath(trailDir, objectsDir, key, sha)
			if hash {
				err = storage.VerifyFile(path, sha)
			} else {
				err = storage.CheckObject(path, sha)
			}
			checked[sha] = err
		}
		if err != nil {
			c.errorf(key, "", "%s", objectProblem(sha, err))
		}
	}
}

// objectProblem words an object's fault for `pantavisor validate`.
func objectProblem(sha string, err error) string {
	var oe *storage.ObjectError
	switch {
	case errors.Is(err, storage.ErrObjectMissing):
		return fmt.Sprintf("object %s is missing from the objects store", sha)
	case errors.As(err, &oe) && errors.Is(err, storage.ErrBadChecksum):
		return fmt.Sprintf("object %s is corrupt: its content hashes to %s", sha, oe.Got)
	}
	return err.Error()
}

// includeOpener opens the files a container's lxc.include lines name. They
// are looked up among the revision's files of that container, never on the
// host's file system, so an include cannot read outside the revision's trail
// whatever the name says or where symlinks point.
func includeOpener(st *State, trailDir, objectsDir, container string) lxcconf.Opener {
	return func(name string) (io.ReadCloser, error) {
		key := container + "/" + name
		sha, ok := st.Objects[key]
		if !ok {
			return nil, fmt.Errorf("%s is not a file of container %s in this revision: %w", name, container, fs.ErrNotExist)
		}
		f, err := os.Open(ObjectPath(trailDir, objectsDir, key, sha))
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", key, err)
		}
		return f, nil
	}
}

// readLXC translates every container's LXC config file.
func readLXC(c *collector, st *State, trailDir, objectsDir string) {
	for _, ct := range st.Containers {
		if readConfig(c, st, ct, trailDir, objectsDir) {
			checkHostname(c, ct)
		}
	}
}

// maxHostname is the kernel's limit on a host name (__NEW_UTS_LEN).
const maxHostname = 64

// checkHostname refuses a container that would get its name as its host
// name (a UTS namespace of its own, and neither lxc.uts.name nor
// network.hostname, as LXC names it) when the kernel cannot take that
// name: every start would fail in sethostname(2) with EINVAL, a try
// rolled back for a reason nothing names.
func checkHostname(c *collector, ct *Container) {
	if len(ct.Name) <= maxHostname || (ct.Network != nil && ct.Network.Hostname != "") {
		return
	}
	if ct.LXC != nil && (ct.LXC.Hostname != "" || slices.Contains(ct.LXC.NamespaceKeep, "uts")) {
		return
	}
	c.errorf(ct.Name+"/run.json", "name", "%q is %d bytes: the container's host name would be its name, and the kernel takes at most %d; give it a network.hostname or lxc.uts.name", ct.Name, len(ct.Name), maxHostname)
}

// readConfig translates ct's LXC config file, when it has one; false when
// it could not, an error reported.
func readConfig(c *collector, st *State, ct *Container, trailDir, objectsDir string) bool {
	if ct.Config == "" {
		return true
	}
	key := ct.Name + "/" + ct.Config
	sha, ok := st.Objects[key]
	if !ok {
		return true // inline JSON config: not an LXC file
	}
	f, err := os.Open(ObjectPath(trailDir, objectsDir, key, sha))
	if err != nil {
		c.errorf(key, "", "open: %v", err)
		return false
	}
	spec, warns, err := lxcconf.ParseIncludes(f, includeOpener(st, trailDir, objectsDir, ct.Name))
	f.Close()
	for _, w := range warns {
		c.warnf(key, "", "%s", w.String())
	}
	if err != nil {
		c.errorf(key, "", "%v", err)
		return false
	}
	ct.LXC = spec
	return true
}
