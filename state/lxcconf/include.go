package lxcconf

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// include reads the file an lxc.include line names in place of the line, as
// LXC does. LXC reads any host path; a revision's config may only include
// files the revision itself brings, in the container's directory, so the
// result does not depend on what happens to be on the device.
func (p *parser) include(e entry) error {
	name, data, err := p.readRevisionFile(e.val)
	if err != nil {
		return err
	}
	for i, f := range p.includes {
		if f == name {
			chain := append(append([]string{}, p.includes[i:]...), name)
			return fmt.Errorf("include loop: %s", strings.Join(chain, " -> "))
		}
	}
	if len(p.includes) >= maxIncludeDepth {
		return fmt.Errorf("%q: includes nested deeper than %d", name, maxIncludeDepth)
	}

	// What the file says is placed on the outermost include line, since
	// warnings and errors carry a single line number of the top file.
	savedLine, savedWhere := p.incLine, p.incWhere
	if p.incWhere == "" {
		p.incLine, p.incWhere = e.line, name
	} else {
		p.incWhere = fmt.Sprintf("%s line %d: %s", p.incWhere, e.line, name)
	}
	p.includes = append(p.includes, name)
	err = p.parseReader(strings.NewReader(string(data)))
	p.includes = p.includes[:len(p.includes)-1]
	p.incLine, p.incWhere = savedLine, savedWhere
	return err
}

// readRevisionFile reads the file a key's value names (lxc.include,
// lxc.seccomp.profile): a path relative to the container's directory in the
// revision that stays inside it, at most maxIncludeSize bytes. LXC reads any
// host path; a revision may only use files it brings itself, so what the
// container gets does not depend on what happens to be on the device.
func (p *parser) readRevisionFile(val string) (name string, data []byte, err error) {
	name = strings.TrimSpace(val)
	if name == "" {
		return "", nil, errors.New("names no file")
	}
	if path.IsAbs(name) {
		return "", nil, fmt.Errorf("%q is a host path; only files in the container's directory of the revision can be used", name)
	}
	name = path.Clean(name)
	if name == "." || name == ".." || strings.HasPrefix(name, "../") {
		return "", nil, fmt.Errorf("%q leaves the container's directory of the revision", val)
	}
	left := p.budget - p.included
	if left <= 0 {
		return "", nil, p.exhausted(name)
	}
	rc, err := p.open(name)
	if err != nil {
		return "", nil, fmt.Errorf("open %q: %w", name, err)
	}
	data, err = io.ReadAll(io.LimitReader(rc, int64(min(left, maxIncludeSize))+1))
	rc.Close()
	// What was read counts, refused or not: a file too large, included
	// over and over, is read over and over too.
	p.included += len(data)
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("read %q: %w", name, err)
	case len(data) > left:
		return "", nil, p.exhausted(name)
	case len(data) > maxIncludeSize:
		return "", nil, fmt.Errorf("%q is larger than %d bytes", name, maxIncludeSize)
	}
	return name, data, nil
}

// exhausted stops the parse at the read of name that would take the
// files read through includes and profiles past the budget.
func (p *parser) exhausted(name string) error {
	p.overBudget = true
	return fmt.Errorf("%q: the files included and profiles read add up to more than %d bytes (a file included over and over?)", name, p.budget)
}
