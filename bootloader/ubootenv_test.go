package bootloader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixtures in testdata/ubootenv were written by fw_setenv
// (libubootenv 0.3.2): single.img with "0x0 0x400", redundant.img with
// "0x0 0x400" and "0x400 0x400"; bootcmd, pv_rev and pv_try set in that
// order, so that the redundant copies hold flags 2 (without pv_try) and 3.
var fixtureEnv = Env{"bootcmd": "run pv_boot", "pv_rev": "3", "pv_try": "4"}

// fixture copies a testdata image into a temporary directory.
func fixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "ubootenv", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func singleEnv(path string, size int64) UbootEnv {
	return UbootEnv{Copies: []EnvCopy{{Device: path, Size: size}}}
}

func redundantEnv(path string, size int64) UbootEnv {
	return UbootEnv{Copies: []EnvCopy{{Device: path, Size: size}, {Device: path, Offset: size, Size: size}}}
}

// zeroFile makes a file of n zero bytes: an environment never written.
func zeroFile(t *testing.T, n int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "env.img")
	if err := os.WriteFile(path, make([]byte, n), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoad(t *testing.T, b Backend) Env {
	t.Helper()
	env, err := b.Load()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return env
}

func TestUbootEnvFixtures(t *testing.T) {
	single := singleEnv(fixture(t, "single.img"), 0x400)
	if env := mustLoad(t, single); !maps.Equal(env, fixtureEnv) {
		t.Errorf("single: %v", env)
	}
	red := redundantEnv(fixture(t, "redundant.img"), 0x400)
	if env := mustLoad(t, red); !maps.Equal(env, fixtureEnv) {
		t.Errorf("redundant: %v", env)
	}
	// Byte for byte what fw_setenv writes for the same variables.
	want, _ := os.ReadFile(filepath.Join("testdata", "ubootenv", "single.img"))
	img, err := formatEnvImage(fixtureEnv, 0x400, false)
	if err != nil || !bytes.Equal(img, want) {
		t.Errorf("single image differs from fw_setenv's: %v", err)
	}
	want, _ = os.ReadFile(filepath.Join("testdata", "ubootenv", "redundant.img"))
	img, err = formatEnvImage(fixtureEnv, 0x400, true)
	img[4] = 3
	if err != nil || !bytes.Equal(img, want[0x400:]) {
		t.Errorf("redundant image differs from fw_setenv's: %v", err)
	}
}

func TestCurrentCopy(t *testing.T) {
	v := func(flags byte) image { return image{valid: true, flags: flags} }
	bad := func(flags byte) image { return image{flags: flags} }
	tests := []struct {
		name string
		a, b image
		want int
	}{
		{"both bad", bad(1), bad(2), -1},
		{"only first", v(1), bad(9), 0},
		{"only second", bad(9), v(1), 1},
		{"higher second", v(1), v(2), 1},
		{"higher first", v(5), v(3), 0},
		{"tie takes first", v(7), v(7), 0},
		{"wrap: 0 after 255", v(255), v(0), 1},
		{"wrap: 0 after 255, other order", v(0), v(255), 0},
		{"254 and 255", v(254), v(255), 1},
		{"1 and 255 is no wrap", v(1), v(255), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := currentCopy(tt.a, tt.b); got != tt.want {
				t.Errorf("currentCopy = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestUbootEnvRedundantWrites: each save goes to the copy that is not
// current, with the counter one up, wrapping after 255; the other copy is
// untouched.
func TestUbootEnvRedundantWrites(t *testing.T) {
	path := zeroFile(t, 0x800)
	u := redundantEnv(path, 0x400)
	if _, err := u.Load(); !errors.Is(err, ErrNoValidCopy) {
		t.Fatalf("zeros: %v, want ErrNoValidCopy", err)
	}
	want := []struct {
		target int
		flags  byte
	}{{1, 1}, {0, 2}, {1, 3}}
	for i, w := range want {
		if err := u.Save(Env{"n": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(path)
		img := checkEnvImage(raw[w.target*0x400:(w.target+1)*0x400], true)
		if !img.valid || img.flags != w.flags {
			t.Fatalf("save %d: copy %d valid %v flags %d, want flags %d", i, w.target, img.valid, img.flags, w.flags)
		}
		if env := mustLoad(t, u); env["n"] != fmt.Sprint(i) {
			t.Fatalf("save %d: loaded %v", i, env)
		}
	}
	// Counter at 254 in copy 1 (current): the next saves write 255 to
	// copy 0, then 0 to copy 1, which must win over 255.
	raw, _ := os.ReadFile(path)
	raw[0x400+4] = 254
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, w := range []struct {
		target int
		flags  byte
	}{{0, 255}, {1, 0}, {0, 1}} {
		if err := u.Save(Env{"wrap": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(path)
		if f := raw[w.target*0x400+4]; f != w.flags {
			t.Fatalf("wrap save %d: copy %d flags %d, want %d", i, w.target, f, w.flags)
		}
		if env := mustLoad(t, u); env["wrap"] != fmt.Sprint(i) {
			t.Fatalf("wrap save %d: loaded %v", i, env)
		}
	}
}

// TestUbootEnvTornWrite: a save cut short leaves a bad CRC in the copy it
// was writing, and the other copy, the old variables, is read.
func TestUbootEnvTornWrite(t *testing.T) {
	path := zeroFile(t, 0x800)
	u := redundantEnv(path, 0x400)
	for _, env := range []Env{{"pv_rev": "1"}, {"pv_rev": "2"}} {
		if err := u.Save(env); err != nil {
			t.Fatal(err)
		}
	}
	// Copy 0 is current (pv_rev=2); the next save goes to copy 1. Tear
	// that write at every byte where old and new differ, keeping either
	// the start of the new copy (sectors written in order) or its end.
	next, err := formatEnvImage(Env{"pv_rev": "3", "pv_try": "x"}, 0x400, true)
	if err != nil {
		t.Fatal(err)
	}
	next[4] = 3
	good, _ := os.ReadFile(path)
	old := good[0x400:]
	last := 0x400 - 1
	for old[last] == next[last] {
		last--
	}
	for cut := 1; cut <= last; cut++ {
		for _, tear := range []string{"start", "end"} {
			torn := bytes.Clone(good)
			if tear == "start" {
				copy(torn[0x400:0x400+cut], next[:cut])
			} else {
				copy(torn[0x400+cut:], next[cut:])
			}
			if err := os.WriteFile(path, torn, 0o644); err != nil {
				t.Fatal(err)
			}
			if env := mustLoad(t, u); env["pv_rev"] != "2" {
				t.Fatalf("torn at %d keeping the %s: %v", cut, tear, env)
			}
		}
	}
	// And the save after a torn one goes to the torn copy again.
	if err := u.Save(Env{"pv_rev": "4"}); err != nil {
		t.Fatal(err)
	}
	if env := mustLoad(t, u); env["pv_rev"] != "4" {
		t.Fatalf("save after a torn write: %v", env)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Equal(raw[:0x400], good[:0x400]) {
		t.Error("the save after a torn write overwrote the good copy")
	}
}

func TestUbootEnvNoValidCopy(t *testing.T) {
	for _, red := range []bool{false, true} {
		t.Run(fmt.Sprint("redundant=", red), func(t *testing.T) {
			path := zeroFile(t, 0x800)
			u := singleEnv(path, 0x400)
			if red {
				u = redundantEnv(path, 0x400)
			}
			_, err := u.Load()
			if !errors.Is(err, ErrNoValidCopy) || !strings.Contains(err.Error(), "CRC32 0x00000000, data sums to") {
				t.Fatalf("load of zeros: %v", err)
			}
			// The steps of an update refuse to make up an environment
			// U-Boot would then boot with instead of its default.
			if _, err := u.Install("1"); !errors.Is(err, ErrNoValidCopy) {
				t.Fatalf("install on no environment: %v", err)
			}
			if raw, _ := os.ReadFile(path); !bytes.Equal(raw, make([]byte, 0x800)) {
				t.Fatal("refused install wrote")
			}
			// An explicit save does.
			if err := u.Save(Env{}); err != nil {
				t.Fatal(err)
			}
			if env := mustLoad(t, u); len(env) != 0 || env.Revision() != FactoryRev {
				t.Fatalf("saved empty env: %v", env)
			}
		})
	}
}

func TestUbootEnvBadContent(t *testing.T) {
	path := zeroFile(t, 0x400)
	u := singleEnv(path, 0x400)
	// Good CRCs over something that is not name=value entries.
	tests := []struct {
		name   string
		data   []byte
		errHas string
	}{
		{"no =", []byte("novalue\x00\x00"), `copy 0 (` + path + ` at 0x0): entry at byte 0: "novalue" is not name=value`},
		{"no end", bytes.Repeat([]byte("a=b\x00"), 0x100), "no end of the variables (two NULs) in 1020 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := make([]byte, 0x400)
			copy(raw[4:], tt.data)
			binary.LittleEndian.PutUint32(raw, crc32.ChecksumIEEE(raw[4:]))
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := u.Load(); err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("err = %v, want %q", err, tt.errHas)
			}
		})
	}
}

func TestUbootEnvRefusals(t *testing.T) {
	path := fixture(t, "redundant.img")
	u := redundantEnv(path, 0x400)
	before, _ := os.ReadFile(path)
	tests := []struct {
		name   string
		env    Env
		errHas string
	}{
		{"too big", Env{"big": strings.Repeat("x", 0x400)}, "the variables take 1030 bytes, a copy of 0x400 bytes holds 1019"},
		{"= in name", Env{"a=b": "1"}, `"a=b" holds '='`},
		{"NUL in value", Env{"a": "1\x00"}, `holds '\x00'`},
		{"newline in name", Env{"a\nb": "1"}, `holds '\n'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := u.Save(tt.env); err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("err = %v, want %q", err, tt.errHas)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
				t.Fatal("refused save wrote")
			}
		})
	}
	if err := u.Save(Env{"big": strings.Repeat("x", 0x400)}); !errors.Is(err, ErrTooBig) {
		t.Errorf("too big: %v, want ErrTooBig", err)
	}
}

func TestUbootEnvDevices(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		u      UbootEnv
		errHas string
	}{
		{"missing", singleEnv(filepath.Join(dir, "none"), 0x400), "no such file"},
		{"short", singleEnv(short, 0x400), "ends 100 bytes into the copy of 0x400 bytes at 0x0"},
		{"char device", singleEnv("/dev/null", 0x400), "neither a regular file nor a block device"},
		{"negative offset in a file", UbootEnv{Copies: []EnvCopy{{Device: short, Offset: -0x400, Size: 0x400}}}, "negative offsets count from the end of a block device"},
		{"no copies", UbootEnv{}, "0 copies"},
		{"sizes differ", UbootEnv{Copies: []EnvCopy{{Device: short, Size: 0x400}, {Device: short, Size: 0x800}}}, "copies of 0x400 and 0x800 bytes"},
		{"tiny", singleEnv(short, 4), "size 0x4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.u.Load()
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("load: %v, want %q", err, tt.errHas)
			}
			err = tt.u.Save(Env{})
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("save: %v, want %q", err, tt.errHas)
			}
		})
	}
	if data, _ := os.ReadFile(short); !bytes.Equal(data, make([]byte, 100)) {
		t.Error("a refused save wrote")
	}
}

// TestUbootEnvKeepsTheRest: a copy inside a larger file is written without
// touching the bytes around it, and a symbolic link to the file stays one.
func TestUbootEnvKeepsTheRest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "disk.img")
	around := bytes.Repeat([]byte{0xa5}, 0x1000)
	if err := os.WriteFile(path, around, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "env")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	u := UbootEnv{Copies: []EnvCopy{{Device: link, Offset: 0x200, Size: 0x400}}}
	if err := u.Save(Env{"pv_rev": "9"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Equal(raw[:0x200], around[:0x200]) || !bytes.Equal(raw[0x600:], around[0x600:]) {
		t.Error("bytes around the copy changed")
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 kept", fi.Mode())
	}
	if env := mustLoad(t, u); env["pv_rev"] != "9" {
		t.Errorf("loaded %v", env)
	}
}

func TestParseFwEnvConfig(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   []EnvCopy
		errHas string
	}{
		{"single", "/dev/mmcblk0 0x3f8000 0x4000\n", []EnvCopy{{"/dev/mmcblk0", 0x3f8000, 0x4000}}, ""},
		{"redundant with comments", "# fw_env.config\n\n/a 0x0 0x2000 0x2000\n/a\t0x2000\t0x2000 0x2000 1\n",
			[]EnvCopy{{"/a", 0, 0x2000}, {"/a", 0x2000, 0x2000}}, ""},
		{"size is hex without 0x", "/a 0 2000\n", []EnvCopy{{"/a", 0, 0x2000}}, ""},
		{"offset decimal", "/a 8192 0x2000\n", []EnvCopy{{"/a", 8192, 0x2000}}, ""},
		{"offset octal", "/a 010 0x2000\n", []EnvCopy{{"/a", 8, 0x2000}}, ""},
		{"offset negative", "/dev/sda -0x20000 0x20000\n", []EnvCopy{{"/dev/sda", -0x20000, 0x20000}}, ""},
		{"all six fields", "/a 0 0x2000 0x20000 2 0\n", []EnvCopy{{"/a", 0, 0x2000}}, ""},
		{"no lines", "# nothing\n", nil, "0 copies"},
		{"two fields", "/a 0\n", nil, "line 1: want device offset size"},
		{"seven fields", "/a 0 1 1 1 0 x\n", nil, "line 1: want device"},
		{"three copies", "/a 0 0x10\n/a 0x10 0x10\n/a 0x20 0x10\n", nil, "line 3: a third copy"},
		{"bad offset", "/a 0x 0x10\n", nil, `line 1: offset "0x": not a number`},
		{"underscore", "/a 1_0 0x10\n", nil, "not a number"},
		{"bad size", "/a 0 zz\n", nil, `size "zz": not a hex number`},
		{"zero size", "/a 0 0\n", nil, "size 0x0: want 1"},
		{"huge size", "/a 0 0xffffffff\n", nil, "size 0xffffffff"},
		{"header-sized", "/a 0 4\n", nil, "size 0x4"},
		{"sizes differ", "/a 0 0x10\n/b 0 0x20\n", nil, "copies of 0x10 and 0x20"},
		{"bad sector size", "/a 0 0x10 x\n", nil, `sector size "x"`},
		{"bad lock", "/a 0 0x10 0 0 2\n", nil, `no-lock "2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseFwEnvConfig([]byte(tt.in))
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want %q", err, tt.errHas)
				}
				return
			}
			if err != nil || fmt.Sprint(u.Copies) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, %v; want %v", u.Copies, err, tt.want)
			}
		})
	}
}

// FuzzParseUbootEnv: a copy is checked and read without panics, as a
// single and as a redundant copy; whatever reads is written back to a copy
// of the same size that reads the same.
func FuzzParseUbootEnv(f *testing.F) {
	for _, name := range []string{"single.img", "redundant.img"} {
		data, err := os.ReadFile(filepath.Join("testdata", "ubootenv", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data[:0x400])
	}
	red, _ := os.ReadFile(filepath.Join("testdata", "ubootenv", "redundant.img"))
	f.Add(red[0x400:])
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte("\x00\x00\x00\x00\x00a=b\x00\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, redundant := range []bool{false, true} {
			hdr := 4
			if redundant {
				hdr = 5
			}
			// A random CRC is all but never right: check the input as it
			// is, then with its CRC made right, so that the content is
			// what gets fuzzed.
			checkEnvImage(raw, redundant)
			if len(raw) <= hdr {
				continue
			}
			raw := bytes.Clone(raw)
			binary.LittleEndian.PutUint32(raw, crc32.ChecksumIEEE(raw[hdr:]))
			if !checkEnvImage(raw, redundant).valid {
				t.Fatal("a right CRC is not valid")
			}
			env, err := parseNulEntries(raw[hdr:], false)
			if err != nil {
				continue
			}
			out, err := formatEnvImage(env, len(raw), redundant)
			if err != nil {
				t.Fatalf("readable env not writable in the same size: %v", err)
			}
			if !checkEnvImage(out, redundant).valid {
				t.Fatal("written copy has a bad CRC")
			}
			back, err := parseNulEntries(out[hdr:], false)
			if err != nil || !maps.Equal(back, env) {
				t.Fatalf("round trip: %v, %v != %v", back, err, env)
			}
		}
	})
}

// FuzzParseFwEnvConfig: never panics; what parses has one or two copies of
// one sane size.
func FuzzParseFwEnvConfig(f *testing.F) {
	f.Add([]byte("/dev/mmcblk0 0x3f8000 0x4000\n"))
	f.Add([]byte("# c\n/a 0x0 0x2000 0x2000\n/a -0x2000 2000 0x2000 1 0\n"))
	f.Add([]byte("/a 010 10\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := ParseFwEnvConfig(data)
		if err != nil {
			return
		}
		if err := u.check(); err != nil {
			t.Fatalf("parsed config fails its check: %v", err)
		}
	})
}
