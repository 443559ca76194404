package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParsePersistence(t *testing.T) {
	tests := []struct {
		in      string
		want    Persistence
		wantErr bool
	}{
		{"", Boot, false},
		{"boot", Boot, false},
		{"revision", Revision, false},
		{"permanent", Permanent, false},
		{"Boot", "", true},
		{"forever", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePersistence(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParsePersistence(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadPersistence) {
				t.Fatalf("error %v is not ErrBadPersistence", err)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		path string
		want Kind
		err  error
	}{
		{"dir", dir, Dir, nil},
		{"squashfs magic", write("a.img", []byte("hsqs\x00\x00\x00\x00")), Squashfs, nil},
		{"squashfs named ext4", write("b.ext4", []byte("hsqsxxxx")), Squashfs, nil},
		{"other", write("c.squashfs", []byte("\x7fELF....")), 0, ErrUnknownImage},
		{"short", write("d", []byte("hs")), 0, ErrUnknownImage},
		{"missing", filepath.Join(dir, "nope"), 0, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(tt.path)
			if got != tt.want || !errors.Is(err, tt.err) {
				t.Fatalf("Detect = %v, %v; want %v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestMountBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		err  error
	}{
		{"no image", Options{WorkBase: "/x"}, ErrBadOptions},
		{"no workbase", Options{Image: "/x"}, ErrBadOptions},
		{"revision without dir", Options{Image: "/x", WorkBase: "/y", Persistence: Revision}, ErrBadOptions},
		{"bad persistence", Options{Image: "/x", WorkBase: "/y", Persistence: "sometimes"}, ErrBadPersistence},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Mount(tt.o); !errors.Is(err, tt.err) {
				t.Fatalf("Mount = %v, want %v", err, tt.err)
			}
		})
	}
}
