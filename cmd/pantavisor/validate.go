package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pantavisor/pv/signature"
	"github.com/pantavisor/pv/state"
)

// Exit codes of `pantavisor validate`.
const (
	exitValid      = 0
	exitInvalid    = 1
	exitUnreadable = 2
)

func validateCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	appengine := fs.Bool("appengine", false, "validate for appengine mode (no BSP)")
	warnings := fs.Bool("warnings", false, "also print warnings (unknown keys, aliases, ...)")
	mode := fs.String("secureboot", "disabled", "check the signatures as PV_SECUREBOOT_MODE does: disabled, audit, lenient or strict")
	sig := &signature.Verifier{}
	fs.StringVar(&sig.TrustStore, "trust-store", "", "PEM certificates a signer's chain must lead to (the device's pvs/trust/ca-certificates.crt)")
	fs.StringVar(&sig.OEMTrustStore, "oem-trust-store", "", "PEM certificates of the OEM signer (pvs/trust/ca-oem-certificates.crt)")
	fs.StringVar(&sig.OEMName, "oem-name", "", "PV_OEM_NAME, the common name of the OEM signer")
	fs.StringVar(&sig.PublicKey, "public-key", "", "PEM public key of signatures without a chain (pvs/trust/pub.pem)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pantavisor validate [--appengine] [--warnings] [--secureboot MODE --trust-store FILE ...] PATH")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUnreadable
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUnreadable
	}
	m, err := signature.ParseMode(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "pantavisor validate: --secureboot: %v\n", err)
		return exitUnreadable
	}
	sig.Mode = m
	opt := state.Options{AppEngine: *appengine, VerifyObjects: true}
	if m != signature.Disabled {
		opt.Signatures = sig // against the clock, as an upload
	}
	path := fs.Arg(0)
	// Every object is hashed: validate is the check that does not trust
	// the store's marks.
	st, err := load(path, opt)
	var rerr *state.ReadError
	if errors.As(err, &rerr) {
		fmt.Fprintf(stderr, "pantavisor validate: %v\n", err)
		return exitUnreadable
	}
	if *warnings && st != nil {
		for _, w := range st.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	if probs := state.Problems(err); len(probs) > 0 {
		for _, p := range probs {
			fmt.Fprintln(stderr, p)
		}
		fmt.Fprintf(stderr, "%s: invalid (%d %s)\n", path, len(probs), plural(len(probs), "error", "errors"))
		return exitInvalid
	}
	if err != nil {
		fmt.Fprintf(stderr, "pantavisor validate: %v\n", err)
		return exitUnreadable
	}
	fmt.Fprintf(stdout, "%s: valid (%d containers, %d groups, %d warnings)\n",
		path, len(st.Containers), len(st.Groups), len(st.Warnings))
	return exitValid
}

// load reads a state file or a trail directory.
func load(path string, opt state.Options) (*state.State, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &state.ReadError{Path: path, Err: err}
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(path, state.TrailJSON)); err != nil {
			return nil, &state.ReadError{Path: path, Err: fmt.Errorf("not a trail directory: no %s", state.TrailJSON)}
		}
		return state.LoadTrail(path, opt)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &state.ReadError{Path: path, Err: err}
	}
	return state.Parse(data, opt)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
