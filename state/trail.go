package state

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pantavisor/pv/state/lxcconf"
)

// TrailJSON is where a revision's state lives inside its trail directory.
const TrailJSON = ".pvr/json"

// ReadError means a state or one of its files could not be read at all, as
// opposed to being read and found invalid.
type ReadError struct {
	Path string
	Err  error
}

func (e *ReadError) Error() string { return fmt.Sprintf("read %s: %v", e.Path, e.Err) }
func (e *ReadError) Unwrap() error { return e.Err }

// LoadTrail reads and validates the revision in a trail directory
// (<storage>/trails/<rev>). Beyond Parse it checks every object: present in
// <storage>/objects/<sha256> (or hard-linked into the trail as upstream
// does) with content matching its sha256, and it translates each container's
// lxc.container.conf into the container's spec. Problems with objects are
// validation errors; an unreadable .pvr/json is a *ReadError.
func LoadTrail(dir string, opt Options) (*State, error) {
	jsonPath := filepath.Join(dir, TrailJSON)
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, &ReadError{Path: jsonPath, Err: err}
	}
	st, perr := Parse(data, opt)
	objectsDir := filepath.Join(dir, "..", "..", "objects")
	var c collector
	checkObjects(&c, st, dir, objectsDir)
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

func checkObjects(c *collector, st *State, trailDir, objectsDir string) {
	verified := map[string]error{} // one object may back several keys
	for _, key := range sortedKeys(st.Objects) {
		sha := st.Objects[key]
		err, done := verified[sha]
		if !done {
			err = verifyObject(ObjectPath(trailDir, objectsDir, key, sha), sha)
			verified[sha] = err
		}
		if err != nil {
			c.errorf(key, "", "%v", err)
		}
	}
}

// verifyObject checks that the file at path hashes to sha.
func verifyObject(path, sha string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("object %s is missing from the objects store", sha)
	}
	if err != nil {
		return fmt.Errorf("open object %s: %w", sha, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read object %s: %w", sha, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("object %s is corrupt: its content hashes to %s", sha, got)
	}
	return nil
}

// readLXC translates every container's LXC config file.
func readLXC(c *collector, st *State, trailDir, objectsDir string) {
	for _, ct := range st.Containers {
		if ct.Config == "" {
			continue
		}
		key := ct.Name + "/" + ct.Config
		sha, ok := st.Objects[key]
		if !ok {
			continue // inline JSON config: not an LXC file
		}
		f, err := os.Open(ObjectPath(trailDir, objectsDir, key, sha))
		if err != nil {
			c.errorf(key, "", "open: %v", err)
			continue
		}
		spec, warns, err := lxcconf.Parse(f)
		f.Close()
		for _, w := range warns {
			c.warnf(key, "", "%s", w.String())
		}
		if err != nil {
			c.errorf(key, "", "%v", err)
			continue
		}
		ct.LXC = spec
	}
}
