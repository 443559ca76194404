package blockdev

import (
	"errors"
	"testing"
)

func TestResolvePathAsIs(t *testing.T) {
	for _, spec := range []string{"/dev/mmcblk0p2", "/no/such/device"} {
		if got, _, err := Resolve(spec); err != nil || got != spec {
			t.Errorf("Resolve(%q) = %q, %v; want it unchanged", spec, got, err)
		}
	}
	// A tag no device can carry is refused, not waited for.
	if _, _, err := Resolve("PARTUUID=00112233-01/PARTNROFF=1"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(PARTUUID=…/PARTNROFF=1) = %v, want a refusal that is not ErrNotFound", err)
	}
}
