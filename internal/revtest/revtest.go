// Package revtest lays out a device storage holding revision 0, the way a
// device keeps it (trails/0/.pvr/json and objects/<sha256>), for the
// integration tests and the benchmarks: one builder, so that what they run
// is the same kind of revision.
package revtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// UpstreamLXC are the lines upstream's pvr template writes into every
// lxc.container.conf besides the root filesystem and the init command.
var UpstreamLXC = []string{
	"lxc.tty.max = 8",
	"lxc.pty.max = 1024",
	"lxc.cgroup.devices.allow = a",
	"lxc.init.cwd = /",
	"lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"lxc.namespace.keep = user net ipc",
	"lxc.mount.auto = proc sys:rw cgroup",
	"lxc.mount.entry = tmpfs run tmpfs rw,nodev,relatime,mode=755 0 0",
}

// Container is one container of the revision.
type Container struct {
	Name  string
	Group string
	// Cmd is the init command line as lxc.init.cmd writes it.
	Cmd string
	// LXC holds the lxc.container.conf lines other than rootfs and init.
	LXC []string
	// Run holds more run.json keys, replacing the defaults.
	Run map[string]any
	// Services, when set, is the container's services.json (its xconnect
	// exports).
	Services any
	// Files are more files of the container's directory in the revision
	// (an lxc.include, a seccomp profile), by name relative to it.
	Files map[string][]byte
	// Config is the container's config overlay (_config/<name>/...), by
	// path in its root: []byte is an object, anything else an inline JSON
	// document (the path must end in .json).
	Config map[string]any
}

// Build writes the storage under dir: device.json (as given, or one group
// "app" when nil), and for every container its run.json, its
// lxc.container.conf and image as its root volume, all as objects.
func Build(dir, image string, device map[string]any, ctrs []Container) error {
	objects := filepath.Join(dir, "objects")
	trail := filepath.Join(dir, "trails", "0", ".pvr")
	for _, d := range []string{objects, trail} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("build storage: %w", err)
		}
	}
	put := func(data []byte) (string, error) {
		sum := sha256.Sum256(data)
		sha := hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(objects, sha), data, 0o644); err != nil {
			return "", fmt.Errorf("build storage: %w", err)
		}
		return sha, nil
	}
	img, err := os.ReadFile(image)
	if err != nil {
		return fmt.Errorf("build storage: %w", err)
	}
	rootSha, err := put(img)
	if err != nil {
		return err
	}
	if device == nil {
		device = map[string]any{"groups": []any{map[string]any{"name": "app"}}}
	}
	st := map[string]any{"#spec": "pantavisor-service-system@1", "device.json": device}
	for _, c := range ctrs {
		conf := append([]string{
			fmt.Sprintf("lxc.rootfs.path = overlayfs:/volumes/%s/root.squashfs:/volumes/%s/lxc-overlay/upper", c.Name, c.Name),
			"lxc.init.cmd = " + c.Cmd,
		}, c.LXC...)
		confSha, err := put([]byte(strings.Join(conf, "\n") + "\n"))
		if err != nil {
			return err
		}
		group := c.Group
		if group == "" {
			group = "app"
		}
		run := map[string]any{
			"#spec": "service-manifest-run@1", "name": c.Name, "type": "lxc",
			"config": "lxc.container.conf", "root-volume": "root.squashfs", "volumes": []any{},
			"group":   group,
			"storage": map[string]any{"lxc-overlay": map[string]any{"persistence": "boot"}},
		}
		for k, v := range c.Run {
			run[k] = v
		}
		st[c.Name+"/run.json"] = run
		if c.Services != nil {
			st[c.Name+"/services.json"] = c.Services
		}
		st[c.Name+"/lxc.container.conf"] = confSha
		for name, data := range c.Files {
			sha, err := put(data)
			if err != nil {
				return err
			}
			st[c.Name+"/"+name] = sha
		}
		for path, v := range c.Config {
			key := "_config/" + c.Name + "/" + path
			data, ok := v.([]byte)
			if !ok {
				st[key] = v
				continue
			}
			sha, err := put(data)
			if err != nil {
				return err
			}
			st[key] = sha
		}
		st[c.Name+"/root.squashfs"] = rootSha
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("build storage: %w", err)
	}
	if err := os.WriteFile(filepath.Join(trail, "json"), data, 0o644); err != nil {
		return fmt.Errorf("build storage: %w", err)
	}
	return nil
}

// WriteExport writes to tgz a revision as upstream's `pvr export` writes it
// (libpvr's Pvr.Export): a gzip'd tar without directory entries whose
// first member is "json", the state, then "objects/<sha256>" for each
// object, sorted and once each, all dated the epoch.
func WriteExport(tgz string, stateJSON []byte, objects map[string][]byte) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(name string, mode int64, data []byte) error {
		hdr := &tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("json", 0o600, stateJSON); err != nil {
		return fmt.Errorf("export %s: %w", tgz, err)
	}
	for _, sha := range slices.Sorted(maps.Keys(objects)) {
		if err := add("objects/"+sha, 0o644, objects[sha]); err != nil {
			return fmt.Errorf("export %s: %w", tgz, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("export %s: %w", tgz, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("export %s: %w", tgz, err)
	}
	return os.WriteFile(tgz, buf.Bytes(), 0o644)
}

// Export writes the revision 0 that Build laid out under dir to tgz, as
// `pvr export` would (WriteExport): its state and the objects it names.
func Export(dir, tgz string) error {
	stateJSON, err := os.ReadFile(filepath.Join(dir, "trails", "0", ".pvr", "json"))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	var st map[string]any
	if err := json.Unmarshal(stateJSON, &st); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	objects := map[string][]byte{}
	for _, v := range st {
		sha, ok := v.(string)
		if !ok || len(sha) != 64 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, "objects", sha))
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		objects[sha] = data
	}
	return WriteExport(tgz, stateJSON, objects)
}
