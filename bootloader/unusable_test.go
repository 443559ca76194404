package bootloader

import (
	"errors"
	"strings"
	"testing"
)

// A bootloader that cannot be set up fails every step with its reason,
// which the boot decision turns into safe mode, and wraps ErrUnusable,
// by which a refused command says why (ctrl).
func TestUnusableFailsEveryStep(t *testing.T) {
	u := Unusable{Err: errors.New("no bootsel partition")}
	_, lerr := u.Load()
	_, ierr := u.Install("1")
	for _, err := range []error{lerr, u.Save(nil), ierr, u.Commit("1"), u.Fail()} {
		if !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), "bootloader unusable: no bootsel partition") {
			t.Errorf("err %v, want ErrUnusable with the reason", err)
		}
	}
}
