package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Size limits of the JSON files the device reads from its storage: a
// file beyond them is refused before it is held in memory, so a trail or
// a storage filled by someone else cannot make PID 1 run out of memory.
const (
	// MaxStateJSON bounds a revision's .pvr/json; upstream's states carry
	// small configuration files inline, a few MiB at most.
	MaxStateJSON = 32 << 20
	// MaxProgressJSON bounds a revision's progress file.
	MaxProgressJSON = 1 << 20
	// MaxCommitMsg bounds a revision's commit message.
	MaxCommitMsg = 1 << 20
)

// ErrFileTooLarge is wrapped by ReadFileMax's error for a file beyond its
// limit.
var ErrFileTooLarge = errors.New("file too large")

// ReadFileMax reads the file at path if it holds at most limit bytes;
// beyond, the error names the file and the limit.
func ReadFileMax(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Read one byte more than the limit rather than trust the size
	// stat reports, which a file that grows would outrun.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: %w: more than the limit of %d bytes", path, ErrFileTooLarge, limit)
	}
	return data, nil
}
