package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// cgroupParentDirs returns the directories of the cgroup parent in every
// hierarchy mounted here, from /proc/self/mountinfo and /proc/self/cgroup:
// a relative parent is under our own cgroup, an absolute one under the
// hierarchy root, as the driver makes them (driver.Options.CgroupParent).
func cgroupParentDirs(mountinfo, selfCgroup, parent string) []string {
	own := map[string]string{} // controllers ("" for v2) -> our cgroup path
	for _, line := range strings.Split(selfCgroup, "\n") {
		_, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrls, p, ok := strings.Cut(rest, ":")
		if ok {
			own[ctrls] = p
		}
	}
	var dirs []string
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		root, mnt := f[3], f[4]
		key, ok := hierarchyKey(g[0], g[2], own)
		if !ok {
			continue
		}
		base := "/"
		if !strings.HasPrefix(parent, "/") {
			base = own[key]
		}
		full := path.Join(base, parent)
		rel, ok := strings.CutPrefix(full, strings.TrimSuffix(root, "/"))
		if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
			continue // the mount shows another part of the hierarchy
		}
		if d := filepath.Join(mnt, rel); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// hierarchyKey finds which line of /proc/self/cgroup a cgroup mount is:
// "" for cgroup2, else the controllers of a v1 line whose every
// controller the mount's super options name.
func hierarchyKey(fstype, superOpts string, own map[string]string) (string, bool) {
	switch fstype {
	case "cgroup2":
		_, ok := own[""]
		return "", ok
	case "cgroup":
		opts := strings.Split(superOpts, ",")
		for ctrls := range own {
			if ctrls == "" {
				continue
			}
			all := true
			for _, c := range strings.Split(ctrls, ",") {
				all = all && slices.Contains(opts, c)
			}
			if all {
				return ctrls, true
			}
		}
	}
	return "", false
}

// removeLeftoverCgroups removes, deepest first, the cgroup directories
// under the device's cgroup parent that a previous run killed with
// SIGKILL left (a clean stop removes its own). The kernel refuses rmdir
// of a cgroup that holds processes or child cgroups (EBUSY), so only
// empty ones go; parent itself goes too when empty, and the driver makes
// it again.
func removeLeftoverCgroups(parent string) (removed []string, err error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("remove leftover cgroups: %w", err)
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("remove leftover cgroups: %w", err)
	}
	if p := strings.Trim(path.Clean("/"+parent), "/"); p == "" {
		return nil, errors.New("remove leftover cgroups: no cgroup parent")
	}
	var errs []error
	for _, top := range cgroupParentDirs(string(mi), string(cg), parent) {
		r, err := removeEmptyTree(top)
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// removeEmptyTree rmdirs top and the directories below it, deepest first;
// a busy one (a cgroup in use) stays, without error.
func removeEmptyTree(top string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("remove leftover cgroups under %s: %w", top, err)
	}
	slices.Reverse(dirs) // WalkDir lists a directory before its contents
	var removed []string
	var errs []error
	for _, d := range dirs {
		switch err := syscall.Rmdir(d); {
		case err == nil:
			removed = append(removed, d)
		case errors.Is(err, syscall.EBUSY), errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.ENOENT):
		default:
			errs = append(errs, fmt.Errorf("remove leftover cgroup %s: %w", d, err))
		}
	}
	return removed, errors.Join(errs...)
}
