package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/runtime/reaper"
	"github.com/pantavisor/pv/storage"
)

// A value of the appengine --config file that is refused is logged, not
// dropped in silence.
func TestAppengineConfigRefusalsAreLogged(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pantavisor.config")
	if err := os.WriteFile(file, []byte("PV_UPDATER_COMMIT_DELAY=90s\nPV_NET_ISOLATION=maybe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	cfg := loadConfig(appengineOpts{config: file}, log)
	if got := cfg.String(config.PVUpdaterCommitDelay); got != "25" {
		t.Fatalf("commit delay %q", got)
	}
	for _, key := range []string{"PV_UPDATER_COMMIT_DELAY", "PV_NET_ISOLATION"} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("bad %s in --config dropped without a log line; log:\n%s", key, buf.String())
		}
	}
}

// PV_LOG_LEVEL=4 is upstream's DEBUG: it turns debug logs on (5, ALL,
// was needed before).
func TestDebugLoggingFromUpstreamsLevels(t *testing.T) {
	for level, want := range map[string]bool{"3": false, "4": true, "5": true} {
		cfg := config.New()
		if _, err := cfg.Set(config.PVLogLevel, level, config.LevelPVConf); err != nil {
			t.Fatal(err)
		}
		if got := debugLogging(cfg); got != want {
			t.Errorf("PV_LOG_LEVEL=%s: debug %v, want %v", level, got, want)
		}
	}
}

// PV_BOOTLOADER_MTD_ONLY=1 keeps upstream's variables in an MTD partition,
// where U-Boot reads them. It was accepted and ignored: the uboot backend
// wrote uboot.txt, which such a U-Boot never reads. It is refused now,
// with the way to get it.
func TestMTDOnlyIsRefusedWithTheWayToGetIt(t *testing.T) {
	cfg := config.New()
	if _, err := cfg.Set(config.PVBootloaderMTDOnly, "1", config.LevelPVConf); err != nil {
		t.Fatal(err)
	}
	layout := storage.Layout{Root: t.TempDir()}
	bl, err := newBootloader(cfg, layout, true, nil, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatalf("PV_BOOTLOADER_MTD_ONLY=1 accepted: %T", bl)
	}
	if !strings.Contains(err.Error(), "PV_BOOTLOADER_MTD_ONLY") || !strings.Contains(err.Error(), "uboot-env") {
		t.Errorf("error %q does not say what to do", err)
	}
	if _, err := os.Stat(filepath.Join(layout.Boot(), "uboot.txt")); err == nil {
		t.Error("uboot.txt written")
	}
}

// A bootloader backend played in appengine mode has no bootloader reading
// its files: its writes are not checkpointed out of the host's journal.
// On a device they are.
func TestOnlyADeviceCheckpointsItsBootloaderFiles(t *testing.T) {
	for _, embedded := range []bool{true, false} {
		for _, typ := range []string{bootloader.TypeUboot, bootloader.TypeGrub} {
			cfg := config.New()
			if _, err := cfg.Set(config.PVBootloaderType, typ, config.LevelPVConf); err != nil {
				t.Fatal(err)
			}
			bl, err := newBootloader(cfg, storage.Layout{Root: t.TempDir()}, embedded, nil, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			var noReader bool
			switch b := bl.(type) {
			case bootloader.Uboot:
				noReader = b.NoReader
			case bootloader.Grub:
				noReader = b.NoReader
			default:
				t.Fatalf("%s: a %T", typ, bl)
			}
			if noReader == embedded {
				t.Errorf("%s, embedded %v: NoReader %v", typ, embedded, noReader)
			}
		}
	}
}

// rpiab on a device is placed on the disk's partitions, which pantavisor
// mounts: one that is not there is the reason the bootloader is unusable
// (safe mode), named, rather than "no bootsel partition" at every boot
// whatever the disk holds.
func TestRPiABPartitionMissingIsTheReason(t *testing.T) {
	cfg := config.New()
	if _, err := cfg.Set(config.PVBootloaderType, "rpiab", config.LevelPVConf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-disk1")
	site := &rpiabSite{devs: map[int]string{1: missing, 2: missing + "-2", 3: missing + "-3"},
		dir: filepath.Join(dir, "run", "rpiab"), fstype: "vfat", boot: true}
	bl, err := newBootloader(cfg, storage.Layout{Root: filepath.Join(dir, "storage")}, true, site, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatalf("rpiab without its partitions accepted: %T", bl)
	}
	for _, w := range []string{"rpiab", "partition 1", missing, "did not appear"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// A reboot with rpiab's tryboot flag armed asks PID 1 for `reboot "0
// tryboot"`, and consumes the flag: the firmware's own is one-shot, and
// the next reboot is a normal one. Other reboots, and other bootloaders,
// are plain.
func TestRebootExitTurnsAnArmedTrybootIntoATryboot(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	flag := filepath.Join(t.TempDir(), "tryboot")
	r := bootloader.RPiAB{TrybootFlag: flag}
	if code := rebootExit(r, log); code != reaper.ExitReboot {
		t.Errorf("no flag: exit %d, want %d", code, reaper.ExitReboot)
	}
	if err := os.WriteFile(flag, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := rebootExit(r, log); code != reaper.ExitRebootTryboot {
		t.Errorf("armed: exit %d, want %d (ExitRebootTryboot)", code, reaper.ExitRebootTryboot)
	}
	if _, err := os.Stat(flag); !os.IsNotExist(err) {
		t.Errorf("the flag was not consumed: %v", err)
	}
	if code := rebootExit(r, log); code != reaper.ExitReboot {
		t.Errorf("after the tryboot: exit %d, want %d", code, reaper.ExitReboot)
	}
	if code := rebootExit(bootloader.AppEngine{Dir: t.TempDir()}, log); code != reaper.ExitReboot {
		t.Errorf("appengine: exit %d", code)
	}
}
