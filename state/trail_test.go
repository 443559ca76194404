package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testLXC = `lxc.tty.max = 8
lxc.rootfs.path = overlayfs:/volumes/app/root.squashfs:/volumes/app/lxc-overlay/upper
lxc.init.cmd = /bin/sh "-c" "echo hi"
lxc.environment = PATH=/bin
lxc.namespace.keep = user net ipc
`

// writeTrail lays out <storage>/trails/0 and <storage>/objects as pantavisor
// keeps them and returns the trail directory.
func writeTrail(t *testing.T, files map[string]string, corrupt string) string {
	t.Helper()
	return layTrail(t, map[string]any{
		"#spec":       SpecSystem1,
		"device.json": map[string]any{"groups": []any{map[string]any{"name": "app"}}},
		"app/run.json": map[string]any{"name": "app", "type": "lxc", "config": "lxc.container.conf",
			"root-volume": "root.squashfs", "storage": map[string]any{"lxc-overlay": map[string]any{"persistence": "boot"}}},
	}, files, corrupt)
}

// layTrail is writeTrail for the state st, to which files are added as
// objects.
func layTrail(t *testing.T, st map[string]any, files map[string]string, corrupt string) string {
	t.Helper()
	storage := t.TempDir()
	trail := filepath.Join(storage, "trails", "0")
	objects := filepath.Join(storage, "objects")
	for _, d := range []string{filepath.Join(trail, ".pvr"), objects} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for key, content := range files {
		sum := sha256.Sum256([]byte(content))
		sha := hex.EncodeToString(sum[:])
		st[key] = sha
		if key == corrupt {
			content += "tampered"
		}
		if err := os.WriteFile(filepath.Join(objects, sha), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(trail, TrailJSON), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return trail
}

func TestLoadTrail(t *testing.T) {
	files := map[string]string{"app/lxc.container.conf": testLXC, "app/root.squashfs": "not really a squashfs"}
	st, err := LoadTrail(writeTrail(t, files, ""), Options{AppEngine: true})
	if err != nil {
		t.Fatalf("valid trail: %v", err)
	}
	lxc := st.Container("app").LXC
	if lxc == nil || strings.Join(lxc.Args, "|") != "/bin/sh|-c|echo hi" || lxc.Env[0] != "PATH=/bin" {
		t.Fatalf("lxc config not translated: %+v", lxc)
	}
}

func TestLoadTrailObjectFaults(t *testing.T) {
	files := map[string]string{"app/lxc.container.conf": testLXC, "app/root.squashfs": "rootfs"}
	t.Run("corrupt object", func(t *testing.T) {
		_, err := LoadTrail(writeTrail(t, files, "app/root.squashfs"), Options{AppEngine: true})
		probs := Problems(err)
		if len(probs) != 1 || probs[0].File != "app/root.squashfs" || !strings.Contains(probs[0].Msg, "corrupt") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing object", func(t *testing.T) {
		trail := writeTrail(t, files, "")
		sum := sha256.Sum256([]byte("rootfs"))
		if err := os.Remove(filepath.Join(trail, "..", "..", "objects", hex.EncodeToString(sum[:]))); err != nil {
			t.Fatal(err)
		}
		_, err := LoadTrail(trail, Options{AppEngine: true})
		probs := Problems(err)
		if len(probs) != 1 || probs[0].File != "app/root.squashfs" || !strings.Contains(probs[0].Msg, "missing") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad lxc config", func(t *testing.T) {
		bad := map[string]string{"app/lxc.container.conf": testLXC + "lxc.init.uid = -3\n", "app/root.squashfs": "rootfs"}
		_, err := LoadTrail(writeTrail(t, bad, ""), Options{AppEngine: true})
		probs := Problems(err)
		if len(probs) != 1 || probs[0].File != "app/lxc.container.conf" || !strings.Contains(probs[0].Msg, "line 6") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("includes that repeat each other", func(t *testing.T) {
		// A few kilobytes of revision that would be read a hundred
		// million times: refused on the config's key, at once.
		bomb := map[string]string{
			"app/lxc.container.conf": testLXC + strings.Repeat("lxc.include = b.conf\n", 100),
			"app/b.conf":             strings.Repeat("lxc.include = c.conf\n", 100),
			"app/c.conf":             strings.Repeat("lxc.include = d.conf\n", 100),
			"app/d.conf":             strings.Repeat("lxc.environment = A=1\n", 100),
			"app/root.squashfs":      "rootfs",
		}
		_, err := LoadTrail(writeTrail(t, bomb, ""), Options{AppEngine: true})
		probs := Problems(err)
		if len(probs) != 1 || probs[0].File != "app/lxc.container.conf" || !strings.Contains(probs[0].Msg, "add up to more than") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		_, err := LoadTrail(t.TempDir(), Options{})
		var re *ReadError
		if err == nil || !errorsAs(err, &re) {
			t.Fatalf("want a ReadError, got %v", err)
		}
	})
}

// TestLoadTrailTrustsVerifiedObjects: a boot hashes an unmarked object
// once and marks it; a marked object is trusted on a stat, so damage after
// the mark is found by VerifyObjects only.
func TestLoadTrailTrustsVerifiedObjects(t *testing.T) {
	files := map[string]string{"app/lxc.container.conf": testLXC, "app/root.squashfs": "rootfs"}
	trail := writeTrail(t, files, "")
	sum := sha256.Sum256([]byte("rootfs"))
	root := filepath.Join(trail, "..", "..", "objects", hex.EncodeToString(sum[:]))
	if _, err := LoadTrail(trail, Options{AppEngine: true}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(root)
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("object not marked by the boot that hashed it: %v, %v", fi.Mode(), err)
	}
	if err := os.Chmod(root, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, []byte("rot"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTrail(trail, Options{AppEngine: true}); err != nil {
		t.Fatalf("a boot read a marked object: %v", err)
	}
	_, err = LoadTrail(trail, Options{AppEngine: true, VerifyObjects: true})
	probs := Problems(err)
	if len(probs) != 1 || probs[0].File != "app/root.squashfs" || !strings.Contains(probs[0].Msg, "corrupt") {
		t.Fatalf("VerifyObjects: got %v", err)
	}
	if fi, _ := os.Stat(root); fi.Mode().Perm() != 0o444 {
		t.Errorf("VerifyObjects changed the storage: %v", fi.Mode())
	}
}

// TestLoadTrailLocal: a local revision's objects are in the same store,
// one level further up.
func TestLoadTrailLocal(t *testing.T) {
	files := map[string]string{"app/lxc.container.conf": testLXC, "app/root.squashfs": "rootfs"}
	trail := writeTrail(t, files, "")
	local := filepath.Join(trail, "..", "locals", "dev")
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(trail, local); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTrail(local, Options{AppEngine: true}); err != nil {
		t.Fatal(err)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// A container that would get its name as host name, a name longer than
// the kernel's 64 bytes, fails every start in sethostname(2): refused
// when the revision is loaded, naming the container, unless it has a
// host name of its own or keeps the host's UTS namespace.
func TestLoadTrailHostnameFromName(t *testing.T) {
	long := strings.Repeat("n", 65)
	tests := []struct {
		name    string
		conf    string
		network map[string]any
		bad     bool
	}{
		{"name as host name", testLXC, nil, true},
		{"lxc.uts.name", testLXC + "lxc.uts.name = short\n", nil, false},
		{"network.hostname", testLXC, map[string]any{"hostname": "short"}, false},
		{"host's UTS namespace", strings.Replace(testLXC, "user net ipc", "user net ipc uts", 1), nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run := map[string]any{"name": long, "config": "lxc.container.conf", "root-volume": "root.squashfs"}
			if tc.network != nil {
				run["network"] = tc.network
			}
			trail := layTrail(t, map[string]any{
				"#spec":            SpecSystem1,
				"device.json":      map[string]any{"groups": []any{map[string]any{"name": "app"}}},
				long + "/run.json": run,
			}, map[string]string{long + "/lxc.container.conf": tc.conf, long + "/root.squashfs": "rootfs"}, "")
			_, err := LoadTrail(trail, Options{AppEngine: true})
			probs := Problems(err)
			switch {
			case tc.bad && (len(probs) != 1 || probs[0].File != long+"/run.json" || probs[0].Path != "name" || !strings.Contains(probs[0].Msg, "the kernel takes at most 64")):
				t.Fatalf("got %v, want the name refused as a host name", err)
			case !tc.bad && err != nil:
				t.Fatalf("got %v, want it valid", err)
			}
		})
	}
}
