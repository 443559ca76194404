package bootloader

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"
)

func TestUbootTxtFormat(t *testing.T) {
	u := Uboot{Dir: t.TempDir()}
	if err := u.Save(Env{"pv_try": "4", "pv_rev": "3"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(u.path())
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("pv_rev=3\x00pv_try=4\x00\x00"), make([]byte, 1024-19)...)
	if !bytes.Equal(data, want) {
		t.Fatalf("uboot.txt = %q…, %d bytes", data[:32], len(data))
	}
}

func TestParseUbootTxt(t *testing.T) {
	tests := []parseCase{
		{"empty file", nil, Env{}, ""},
		{"zeros", make([]byte, 1024), Env{}, ""},
		{"erased flash", bytes.Repeat([]byte{0xff}, 1024), Env{}, ""},
		{"after 0xff 0xff", []byte("pv_rev=3\x00\xff\xffjunk"), Env{"pv_rev": "3"}, ""},
		{"end of file ends", []byte("pv_rev=3\x00"), Env{"pv_rev": "3"}, ""},
		// upstream unsets a variable by writing it empty, and writes 64 KiB
		{"upstream's unset", append([]byte("pv_rev=3\x00pv_try=\x00\x00"), make([]byte, 65536-18)...),
			Env{"pv_rev": "3", "pv_try": ""}, ""},
		{"bytes after 1 KiB ignored", append(make([]byte, 1024), "junk"...), Env{}, ""},
		{"later entry wins", []byte("a=1\x00a=2\x00\x00"), Env{"a": "2"}, ""},
		{"value with =", []byte("a=b=c\x00\x00"), Env{"a": "b=c"}, ""},
		{"no =", []byte("pv_rev\x00\x00"), nil, `entry at byte 0: "pv_rev" is not name=value`},
		{"empty name", []byte("a=1\x00=2\x00\x00"), nil, "entry at byte 4: variable with an empty name"},
		{"unterminated", []byte("pv_rev=3"), nil, "entry at byte 0: no NUL before the end"},
		{"unterminated in the first KiB", append(bytes.Repeat([]byte("a"), 1030), 0), nil, "no NUL before the end"},
		{"newline in name", []byte("a\nb=1\x00\x00"), nil, `holds '\n'`},
	}
	checkParse(t, func(d []byte) (Env, error) { return parseNulFile(d, UbootTxtSize) }, tests)
}

// TestUbootTxtRefusals: what cannot be stored is refused by name and the
// file stays as it was.
func TestUbootTxtRefusals(t *testing.T) {
	u := Uboot{Dir: t.TempDir()}
	if err := u.Save(Env{"pv_rev": "3"}); err != nil {
		t.Fatal(err)
	}
	tests := []refusal{
		{"too big", Env{"pv_rev": strings.Repeat("x", 1020)}, "the variables take 1029 bytes, the file holds 1024"},
		{"exactly one byte too big", Env{"a": strings.Repeat("x", 1021)}, "take 1025 bytes"},
		{"= in name", Env{"a=b": "1"}, `variable name "a=b" holds '='`},
		{"NUL in value", Env{"a": "1\x002"}, `holds '\x00'`},
		{"newline in name", Env{"a\n": "1"}, `holds '\n'`},
		{"empty name", Env{"": "1"}, "empty name"},
		{"0xff name", Env{"\xffa": "1"}, "starts with 0xff"},
	}
	checkRefusals(t, u.Save, u.path(), "uboot.txt", tests)
	if err := u.Save(Env{"pv_rev": strings.Repeat("x", 1024-9)}); err != nil {
		t.Errorf("a full 1 KiB env refused: %v", err)
	}
	if err := u.Save(Env{"pv_rev": strings.Repeat("x", 1024-8)}); !errors.Is(err, ErrTooBig) {
		t.Errorf("1 byte over: %v, want ErrTooBig", err)
	}
	if err := os.WriteFile(u.path(), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Install("5"); err == nil || !strings.Contains(err.Error(), "uboot.txt") {
		t.Errorf("install over a garbage uboot.txt: %v", err)
	}
	if data, _ := os.ReadFile(u.path()); string(data) != "garbage" {
		t.Error("install over a garbage uboot.txt changed it")
	}
}

// FuzzParseUbootTxt: never panics, and whatever parses is written back to
// a 1 KiB file that parses to the same variables.
func FuzzParseUbootTxt(f *testing.F) {
	f.Add([]byte("pv_rev=3\x00pv_try=4\x00\x00"))
	f.Add(append([]byte("pv_rev=3\x00pv_try=\x00\x00"), make([]byte, 1000)...))
	f.Add([]byte("a=1\x00\xff\xff"))
	f.Add([]byte("a=1\x00a=2\x00b\x00"))
	f.Add([]byte("pv_rev=3"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := parseNulFile(data, UbootTxtSize)
		if err != nil {
			return
		}
		out, err := formatNulFile(env, UbootTxtSize)
		if err != nil {
			t.Fatalf("parsed env not writable: %v", err)
		}
		if len(out) != UbootTxtSize {
			t.Fatalf("wrote %d bytes", len(out))
		}
		back, err := parseNulFile(out, UbootTxtSize)
		if err != nil || !maps.Equal(back, env) {
			t.Fatalf("round trip: %v, %v != %v", back, err, env)
		}
	})
}
