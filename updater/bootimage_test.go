package updater

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// installBSP installs revision rev whose BSP is bsp (bsp/run.json), with
// objects, name to content, under bsp/.
func installBSP(t *testing.T, l storage.Layout, rev, bsp string, objects map[string]string) {
	t.Helper()
	keys := []string{`"#spec":"pantavisor-service-system@1"`, `"bsp/run.json":` + bsp}
	for name, content := range objects {
		sum := sha256.Sum256([]byte(content))
		sha := hex.EncodeToString(sum[:])
		if _, err := l.PutObject(sha, strings.NewReader(content), 0); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, `"bsp/`+name+`":"`+sha+`"`)
	}
	if err := l.InstallTrail(rev, []byte("{"+strings.Join(keys, ",")+"}"), storage.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A revision's rpiab boot image is the object its BSP's rpiab key names,
// compressed when the name ends in .gz; a revision with no rpiab key, or
// with fit (which upstream boots instead), has none, named.
func TestBootImage(t *testing.T) {
	l := storage.Layout{Root: t.TempDir()}
	installBSP(t, l, "1", `{"rpiab":"rpiboot.img.gz"}`, map[string]string{"rpiboot.img.gz": "gzipped boot files"})
	installBSP(t, l, "2", `{"rpiab":"rpiboot.img"}`, map[string]string{"rpiboot.img": "gzipped boot files"})
	installBSP(t, l, "3", `{"linux":"kernel.img","initrd":"pantavisor"}`, map[string]string{"kernel.img": "k", "pantavisor": "i"})
	installBSP(t, l, "4", `{"fit":"pantavisor.fit","rpiab":"rpiboot.img"}`, map[string]string{"pantavisor.fit": "f", "rpiboot.img": "b"})
	o := state.Options{}

	img, err := BootImage(l, o, "1")
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(img.Path); err != nil || string(data) != "gzipped boot files" || !img.Gzip {
		t.Errorf("boot image of revision 1: %+v: %q, %v", img, data, err)
	}
	plain, err := BootImage(l, o, "2")
	if err != nil || plain.Gzip || plain.Object != img.Object {
		t.Errorf("boot image of revision 2: %+v, %v; want the same object as revision 1's, not compressed", plain, err)
	}
	for _, rev := range []string{"3", "4"} {
		if _, err := BootImage(l, o, rev); !errors.Is(err, bootloader.ErrNoBootImage) || !strings.Contains(err.Error(), "revision "+rev) {
			t.Errorf("boot image of revision %s: %v, want ErrNoBootImage naming it", rev, err)
		}
	}
	if _, err := BootImage(l, o, "9"); err == nil || errors.Is(err, bootloader.ErrNoBootImage) {
		t.Errorf("boot image of a revision not there: %v", err)
	}
}
