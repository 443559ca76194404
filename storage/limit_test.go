package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFileMax(t *testing.T) {
	p := filepath.Join(t.TempDir(), "json")
	if err := os.WriteFile(p, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFileMax(p, 5); err != nil || string(b) != "12345" {
		t.Fatalf("at the limit: %q, %v", b, err)
	}
	_, err := ReadFileMax(p, 4)
	if !errors.Is(err, ErrFileTooLarge) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "limit of 4 bytes") {
		t.Fatalf("beyond the limit: %v; want ErrFileTooLarge naming %s and the limit", err, p)
	}
	if _, err := ReadFileMax(filepath.Join(t.TempDir(), "none"), 4); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestProgressTooLarge checks a reader of the trail applies the limit.
func TestProgressTooLarge(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	if err := os.MkdirAll(l.Trail("1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteProgress("1", Progress{Status: "DONE"}); err != nil {
		t.Fatal(err)
	}
	path, err := l.metaFile("1", TrailProgress)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Repeat(" ", MaxProgressJSON+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReadProgress("1"); !errors.Is(err, ErrFileTooLarge) {
		t.Fatalf("ReadProgress of an oversized file: %v; want ErrFileTooLarge", err)
	}
}
