package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// maxTarJSON bounds the tarball's state JSON, as the server does.
const maxTarJSON = 4 << 20

// installTarball is upstream's "steps install": the tarball (gzip or
// plain) holds "json" and "objects/<sha256>". Objects the device lacks are
// streamed to it straight from the tarball, then the json is installed as
// the revision unless the revision exists already. It prints
// {"revision":"<rev>"}.
func installTarball(e *env, args []string) int {
	file := args[0]
	rev := ""
	if len(args) > 1 {
		rev = args[1]
		if !strings.HasPrefix(rev, "locals/") {
			fmt.Fprintf(e.stderr, "pvcontrol: revision %q: only local revisions (locals/NAME) can be installed\n", rev)
			return exitUsage
		}
	} else {
		sha, err := fileSHA(file)
		if err != nil {
			fmt.Fprintf(e.stderr, "pvcontrol: %v\n", err)
			return exitFailed
		}
		rev = "locals/" + sha
	}

	res, err := e.c.do("GET", stepPath(rev), "", nil)
	if err == nil && res.status == 200 {
		// Upstream's rule: an existing revision is left as it is.
		return e.printRevision(rev)
	}
	body, code := e.call("GET", "/objects", nil)
	if code != exitOK {
		return code
	}
	var stored []struct {
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(body, &stored); err != nil {
		fmt.Fprintf(e.stderr, "pvcontrol: read answer of GET /objects: %v\n", err)
		return exitFailed
	}
	have := make(map[string]bool, len(stored))
	for _, o := range stored {
		have[o.SHA256] = true
	}

	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintf(e.stderr, "pvcontrol: %v\n", err)
		return exitFailed
	}
	defer f.Close()
	tr, err := tarReader(f)
	if err != nil {
		fmt.Fprintf(e.stderr, "pvcontrol: read %s: %v\n", file, err)
		return exitFailed
	}
	var stateJSON []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "pvcontrol: read %s: %v\n", file, err)
			return exitFailed
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		switch dir, base := path.Split(name); {
		case name == "json":
			if h.Size > maxTarJSON {
				fmt.Fprintf(e.stderr, "pvcontrol: %s: json is %d bytes, more than %d\n", file, h.Size, maxTarJSON)
				return exitFailed
			}
			if stateJSON, err = io.ReadAll(tr); err != nil {
				fmt.Fprintf(e.stderr, "pvcontrol: read %s: %v\n", file, err)
				return exitFailed
			}
		case dir == "objects/" && !have[base]:
			res, err := e.upload("/objects/"+base, file, tr, h.Size)
			if _, code := e.answer(res, err); code != exitOK {
				fmt.Fprintf(e.stderr, "pvcontrol: object %s of %s not uploaded\n", base, file)
				return code
			}
			have[base] = true
		}
	}
	if stateJSON == nil {
		fmt.Fprintf(e.stderr, "pvcontrol: %s has no json\n", file)
		return exitFailed
	}
	if code := e.putRevision(rev, stateJSON); code != exitOK {
		return code
	}
	return e.printRevision(rev)
}

func (e *env) printRevision(rev string) int {
	b, _ := json.Marshal(struct {
		Revision string `json:"revision"`
	}{rev})
	fmt.Fprintf(e.stdout, "%s\n", b)
	return exitOK
}

// tarReader reads a tarball, gunzipping it when it starts with gzip's
// magic number.
func tarReader(r io.Reader) (*tar.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil {
		return nil, fmt.Errorf("read tarball: %w", err)
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read gzip: %w", err)
		}
		return tar.NewReader(zr), nil
	}
	return tar.NewReader(br), nil
}

// fileSHA is the sha256 of a file's content, in hex.
func fileSHA(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
