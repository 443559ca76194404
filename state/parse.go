// Package state parses and validates a Pantavisor revision: the
// pantavisor-service-system@1 state JSON that upstream tools (pvr, pvtx)
// write, with its device.json, run.json, services.json and BSP documents.
//
// Parse is strict where upstream is lenient in ways that brick devices:
// keys match exactly, and every rule of the contract (unknown group, pool or
// provider, bad addresses, ingress collisions, missing services, ...) is
// checked in one pass before anything runs. All errors are returned together,
// each naming the state key and the key path inside it.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pantavisor/pv/signature"
	"github.com/pantavisor/pv/storage"
)

// Options change how a state is read.
type Options struct {
	// AppEngine skips bsp/run.json and bsp/drivers.json as upstream does when
	// pantavisor runs as an application rather than as the device's init.
	AppEngine bool
	// VerifyObjects makes LoadTrail hash every object, even those the
	// store marked verified when it wrote them, and leave the storage
	// untouched. For `pantavisor validate` and checks; a boot leaves it
	// off (a 200 MB root volume costs a stat instead of a read). Parse
	// ignores it.
	VerifyObjects bool
	// GroupTimeout is the status-goal timeout, in seconds, of a group
	// that declares none: PV_UPDATER_GOALS_TIMEOUT, as upstream reads
	// it; DefaultGroupTimeout when 0.
	GroupTimeout int
	// Signatures, when set, checks the revision's signatures (_sigs/,
	// upstream's pvs@2) under its mode: a refusal is a problem of the
	// signature's key, an audit's uncovered keys are warnings.
	Signatures *signature.Verifier
}

// Parse reads a state JSON document and validates it. It returns the model
// and, when the state has errors, an *InvalidError listing all of them; the
// model is returned in both cases (partially filled when invalid) so that
// tools can still show what was understood. A state with errors must not be
// run.
func Parse(data []byte, opt Options) (*State, error) {
	p := &parser{opt: opt, st: &State{
		Volumes: map[string]Volume{},
		Objects: map[string]string{},
		JSONs:   map[string]json.RawMessage{},
	}}
	p.parse(data)
	sortProblems(p.c.errs)
	sortProblems(p.c.warns)
	p.st.Warnings = p.c.warns
	if len(p.c.errs) > 0 {
		return p.st, &InvalidError{Problems: p.c.errs}
	}
	return p.st, nil
}

// Problems returns the problems inside err when it is an *InvalidError, and
// nil otherwise.
func Problems(err error) []Problem {
	var ie *InvalidError
	if errors.As(err, &ie) {
		return ie.Problems
	}
	return nil
}

type parser struct {
	opt Options
	c   collector
	st  *State
	// docs holds the top-level values by key.
	docs map[string]json.RawMessage
	// order is the key order of the document.
	order []string
	// runs and services hold the container documents by container name.
	runs     map[string]json.RawMessage
	services map[string]json.RawMessage
	// runlevels records the deprecated runlevel key per container.
	runlevels map[string]string
	// diskAt, ingressAt and reqAt hold the key path of every element of
	// st.Disks, st.Ingress and each container's services.required/optional
	// (by "<container>/<key>"), index for index: elements that were not
	// objects are absent from the model, so the model's index is not the
	// document's.
	diskAt    []string
	ingressAt []string
	reqAt     map[string][]string
	// linkListeners are the consumer ends of the tcp and http links,
	// gathered by validateServices.
	linkListeners []linkListener
	// ingressListeners indexes the ingress rules' listen addresses, for
	// validateLinkListeners.
	ingressListeners *listenIndex
	// deviceBroken is set when device.json is not an object at all, so that
	// references into it are not reported a second time.
	deviceBroken bool
	// The lookups by name (index.go): byName is filled by readContainers,
	// the others at their first use, once what they index is read.
	byName    map[string]*Container
	groupAt   map[string]int
	poolAt    map[string]int
	exportAt  map[exportKey]int
	exporters map[string]*exporters
}

func (p *parser) parse(data []byte) {
	if !p.readTop(data) {
		return
	}
	p.readSpec()
	if len(p.c.errs) > 0 {
		return // not a system@1 state: nothing else can be understood
	}
	p.classify()
	p.readDevice()
	if !p.opt.AppEngine {
		p.readBSP()
	}
	p.readContainers()
	p.assignGroups()
	p.validate()
	p.verifySignatures(data)
}

// verifySignatures runs opt.Signatures on the document.
func (p *parser) verifySignatures(data []byte) {
	v := p.opt.Signatures
	if v == nil {
		return
	}
	rep, err := v.Verify(data)
	var se *signature.Error
	switch {
	case errors.As(err, &se):
		for _, pr := range se.Problems {
			p.c.errs = append(p.c.errs, Problem{File: pr.Key, Msg: fmt.Sprintf("%s (PV_SECUREBOOT_MODE=%s)", pr.Reason, v.Mode), Secureboot: true})
		}
	case err != nil:
		p.c.errorf("", "", "%v", err)
	case len(rep.Uncovered) > 0:
		p.c.warnf("", "", "PV_SECUREBOOT_MODE=audit: %d keys covered by no signature, first %s", len(rep.Uncovered), rep.Uncovered[0])
	}
}

// readTop splits the document into its top-level keys, refusing duplicate
// keys: encoding/json would silently keep the last one, and two different
// values for one file of a revision is not something to guess about.
func (p *parser) readTop(data []byte) bool {
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v) // for the position of the fault
		p.c.errorf("", "", "not valid JSON: %v", err)
		return false
	}
	keys, values, err := splitObject(data)
	if err != nil {
		p.c.errorf("", "", "%v", err)
		return false
	}
	p.docs = make(map[string]json.RawMessage, len(keys))
	for i, key := range keys {
		if _, dup := p.docs[key]; dup {
			p.c.errorf(key, "", "key appears more than once in the state")
			continue
		}
		p.docs[key] = values[i]
		p.order = append(p.order, key)
	}
	return true
}

func (p *parser) readSpec() {
	raw, ok := p.docs["#spec"]
	if !ok {
		p.c.errorf("#spec", "", "missing: a state must declare %q", SpecSystem1)
		return
	}
	s, ok := decodeString(raw)
	if !ok {
		p.c.errorf("#spec", "", "must be a string, got %s", describe(raw))
		return
	}
	switch s {
	case SpecSystem1:
		p.st.Spec = s
	case "pantavisor-multi-platform@1":
		p.c.errorf("#spec", "", "%q is the legacy multi-platform format, not supported; convert the revision to %q", s, SpecSystem1)
	default:
		p.c.errorf("#spec", "", "unsupported spec %q; want %q", s, SpecSystem1)
	}
}

// Special top-level documents, parsed in their own passes.
var specialKeys = map[string]bool{
	"#spec": true, "bsp/run.json": true, "bsp/drivers.json": true,
	"device.json": true, "disks.json": true, "groups.json": true,
}

// classify sorts every other key into container documents, inline JSON
// documents and object references.
func (p *parser) classify() {
	p.runs = map[string]json.RawMessage{}
	p.services = map[string]json.RawMessage{}
	for _, key := range p.order {
		if specialKeys[key] {
			continue
		}
		if msg := checkKeyPath(key); msg != "" {
			p.c.errorf(key, "", "%s", msg)
			continue
		}
		if strings.HasPrefix(key, "_sigs/") {
			continue // signatures are checked by the signature verifier, not here
		}
		raw := p.docs[key]
		dir, file, nested := strings.Cut(key, "/")
		if nested && !strings.Contains(file, "/") {
			switch file {
			case "run.json":
				p.runs[dir] = raw
				continue
			case "services.json":
				p.services[dir] = raw
				continue
			case "src.json", "build.json":
				continue // build provenance, not part of the running revision
			}
		}
		p.classifyArtifact(key, raw)
	}
	p.checkFileTree()
}

// checkFileTree refuses a key below another key: the trail lays every
// key out as a file (an object linked, a document written), and one path
// cannot be a file and the directory of another. The install would fail
// halfway otherwise, as an I/O error rather than a fault of the state.
func (p *parser) checkFileTree() {
	files := map[string]bool{}
	for _, key := range p.order {
		if written(key) {
			files[key] = true
		}
	}
	for _, key := range p.order {
		if !written(key) {
			continue
		}
		for i := strings.IndexByte(key, '/'); i >= 0; i = nextSlash(key, i) {
			if dir := key[:i]; files[dir] {
				p.c.errorf(key, "", "%s is a file of the revision: no key can be below it", dir)
				break
			}
		}
	}
}

// written says whether key becomes a file of the trail: every key but
// #spec and the signatures (storage.ParseRefs, which lays the trail out,
// skips those; a key that is neither an object nor a document is an
// error of its own).
func written(key string) bool {
	return key != "#spec" && !strings.HasPrefix(key, "_sigs/") && checkKeyPath(key) == ""
}

func nextSlash(s string, i int) int {
	if j := strings.IndexByte(s[i+1:], '/'); j >= 0 {
		return i + 1 + j
	}
	return -1
}

// classifyArtifact files a key as an object reference or an inline JSON.
// As upstream (system1_parse_objects), a .json key whose value is not a
// sha256 is an inline JSON document, whatever JSON value it is: an object,
// an array, or a string, number, boolean or null.
func (p *parser) classifyArtifact(key string, raw json.RawMessage) {
	s, isString := decodeString(raw)
	switch {
	case isString && storage.IsSHA256(s):
		p.st.Objects[key] = s
	case strings.HasSuffix(key, ".json"):
		p.st.JSONs[key] = raw
	case isString:
		p.c.errorf(key, "", "must be the sha256 of an object (64 lower-case hex digits), got %q", truncate(s, 70))
	default:
		p.c.errorf(key, "", "must be an object sha256 or, for a .json file, a JSON document; got %s", describe(raw))
	}
}

// checkKeyPath refuses state keys that would escape the trail directory when
// written as files, or that cannot be files at all.
func checkKeyPath(key string) string {
	switch {
	case key == "":
		return "empty key"
	case strings.HasPrefix(key, "/"):
		return "key must be a relative path"
	case strings.ContainsRune(key, 0):
		return "key contains a NUL byte"
	case len(key) > storage.MaxKeyLen:
		return fmt.Sprintf("key is %d bytes: a key is at most %d (its paths on the device must fit PATH_MAX)", len(key), storage.MaxKeyLen)
	}
	for _, seg := range strings.Split(key, "/") {
		switch {
		case seg == "":
			return "key has an empty path segment"
		case seg == "." || seg == "..":
			return "key has a '.' or '..' path segment"
		case len(seg) > maxNameLen:
			return fmt.Sprintf("key has a path segment of %d bytes: a file name is at most %d", len(seg), maxNameLen)
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// owner returns the container a state key belongs to ("" for the BSP):
// "<name>/..." and "_config/<name>/..." are the container's.
func owner(key string) string {
	first, rest, ok := strings.Cut(key, "/")
	if !ok {
		return ""
	}
	if first == "_config" {
		name, _, ok := strings.Cut(rest, "/")
		if ok {
			return name
		}
		return ""
	}
	return first
}

// errorf is a shorthand used by the passes.
func (p *parser) errorf(file, path, format string, args ...any) {
	p.c.errorf(file, path, format, args...)
}

func (p *parser) warnf(file, path, format string, args ...any) {
	p.c.warnf(file, path, format, args...)
}
