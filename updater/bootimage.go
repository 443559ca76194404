package updater

import (
	"fmt"
	"strings"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// BootImage returns revision rev's rpiab boot image (bootloader.RPiAB's
// Image): the object bsp/run.json's rpiab key names, compressed when its
// name ends in .gz, as upstream links it as .pv/rpiboot.img[.gz]. A
// revision whose BSP has no rpiab key, or has fit, which upstream takes
// over it, has none: an error wrapping bootloader.ErrNoBootImage. o are
// the options the revision is loaded with (a device's: not AppEngine,
// which skips the BSP).
func BootImage(l storage.Layout, o state.Options, rev string) (bootloader.BootImage, error) {
	if err := storage.CheckRev(rev); err != nil {
		return bootloader.BootImage{}, err
	}
	trail := l.Trail(rev)
	st, err := state.LoadTrail(trail, o)
	if err != nil {
		return bootloader.BootImage{}, fmt.Errorf("boot image of revision %s: %w", rev, err)
	}
	switch {
	case st.BSP == nil || st.BSP.RPiAB == "":
		return bootloader.BootImage{}, fmt.Errorf("revision %s: %w", rev, bootloader.ErrNoBootImage)
	case st.BSP.FIT != "":
		return bootloader.BootImage{}, fmt.Errorf("revision %s: %w: bsp/run.json has fit, which upstream boots instead", rev, bootloader.ErrNoBootImage)
	}
	key := "bsp/" + st.BSP.RPiAB
	sha := st.Objects[key]
	return bootloader.BootImage{
		Path:   state.ObjectPath(trail, storage.TrailObjects(trail), key, sha),
		Gzip:   strings.HasSuffix(st.BSP.RPiAB, ".gz"),
		Object: sha,
	}, nil
}
