package drm

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect"
)

// With pid 0 both ends are the host: the plugin's own logic (type check,
// copy of number, mode and owner, the stamp that guards removal) is
// tested here; the namespaces are the integration test's.
func TestInjectCopiesTheProvidersDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "provider", "null")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(src, unix.S_IFCHR|0o620, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(src, 0o620); err != nil { // mknod applied the umask
		t.Fatal(err)
	}
	if err := os.Chown(src, 12, 34); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "consumer", "dev", "dri", "card0")
	l := xconnect.Link{Consumer: "app", Provider: "gpu", Name: "drm", Type: "drm", Socket: src, Target: dst}
	inj, err := Inject(l, xconnect.Ends{})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != unix.S_IFCHR|0o620 || st.Rdev != unix.Mkdev(1, 3) || st.Uid != 12 || st.Gid != 34 {
		t.Fatalf("node mode %o rdev %d:%d owner %d:%d; want char 620 1:3 12:34",
			st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Uid, st.Gid)
	}
	// Injecting again over the same device keeps it, and the second
	// injection is the one that owns it now.
	if inj, err = Inject(l, xconnect.Ends{}); err != nil {
		t.Fatalf("second inject: %v", err)
	}
	if err := inj.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dst); !os.IsNotExist(err) {
		t.Fatalf("node still there after Remove: %v", err)
	}
}

func TestInjectRefusesWhatIsNotADevice(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "file")
	if err := os.WriteFile(src, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l := xconnect.Link{Consumer: "app", Provider: "gpu", Name: "drm", Type: "drm", Socket: src, Target: filepath.Join(dir, "dst")}
	if _, err := Inject(l, xconnect.Ends{}); err == nil {
		t.Fatal("a regular file was injected as a device")
	}
	l.Socket = ""
	if _, err := Inject(l, xconnect.Ends{}); err == nil {
		t.Fatal("an export with no device path was injected")
	}
}

func TestRemoveLeavesWhatIsNoLongerOurs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "null")
	inj, err := xconnect.Mknod(0, dst, unix.S_IFCHR|0o666, unix.Mkdev(1, 3), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Someone else replaced it since: Remove must leave theirs.
	if err := os.Remove(dst); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := inj.Remove(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "theirs" {
		t.Fatalf("Remove removed a file it did not make: %q %v", b, err)
	}
}
