package bootloader

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// AutobootMax is the most of autoboot.txt the Raspberry Pi firmware reads.
const AutobootMax = 512

// autoboot is what an A/B autoboot.txt says: the partition a normal boot
// loads, and the one a tryboot loads.
type autoboot struct {
	Boot, Try int
}

// parseAutoboot reads autoboot.txt as the firmware does, refusing what an
// A/B layout cannot be: lines before any section are in [all]; [none]
// hides the lines after it; of a property set twice the later counts. It
// wants tryboot_a_b=1 and boot_partition in [all] and boot_partition in
// [tryboot], two different partitions. Other sections (the firmware takes
// only these three in autoboot.txt) and other properties are refused, for
// a rewrite would drop them. Trailing NULs are tolerated: upstream writes
// one.
func parseAutoboot(data []byte) (autoboot, error) {
	if len(data) > AutobootMax {
		return autoboot{}, fmt.Errorf("%d bytes: the firmware reads %d", len(data), AutobootMax)
	}
	data = bytes.TrimRight(data, "\x00")
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return autoboot{}, fmt.Errorf("NUL at byte %d", i)
	}
	section := "all"
	props := map[string]map[string]int{"all": {}, "tryboot": {}, "none": {}}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			name, ok := strings.CutSuffix(line[1:], "]")
			if _, known := props[name]; !ok || !known {
				return autoboot{}, fmt.Errorf("line %d: section %q: autoboot.txt takes [all], [none] and [tryboot]", n+1, line)
			}
			section = name
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || (k != "boot_partition" && k != "tryboot_a_b") {
			return autoboot{}, fmt.Errorf("line %d: %q: want boot_partition=N or tryboot_a_b=1", n+1, line)
		}
		num, err := strconv.ParseUint(v, 10, 8)
		if err != nil {
			return autoboot{}, fmt.Errorf("line %d: %s=%q: not a number", n+1, k, v)
		}
		props[section][k] = int(num)
	}
	all, try := props["all"], props["tryboot"]
	if all["tryboot_a_b"] != 1 {
		return autoboot{}, fmt.Errorf("no tryboot_a_b=1 in [all]: a tryboot would load tryboot.txt, not the other partition")
	}
	a := autoboot{Boot: all["boot_partition"], Try: try["boot_partition"]}
	if _, ok := try["boot_partition"]; !ok && all["boot_partition"] != 0 {
		// [tryboot] inherits [all]'s: the same partition for both.
		a.Try = a.Boot
	}
	switch {
	case a.Boot == 0:
		return autoboot{}, fmt.Errorf("no boot_partition in [all] (0, the first bootable partition, is not an A/B layout)")
	case a.Try == 0:
		return autoboot{}, fmt.Errorf("boot_partition=0 in [tryboot]: not an A/B layout")
	case a.Boot == a.Try:
		return autoboot{}, fmt.Errorf("[all] and [tryboot] boot partition %d: not an A/B layout", a.Boot)
	}
	return a, nil
}

// format writes autoboot.txt as the Raspberry Pi documentation and
// upstream write it.
func (a autoboot) format() []byte {
	return fmt.Appendf(nil, "[all]\ntryboot_a_b=1\nboot_partition=%d\n[tryboot]\nboot_partition=%d\n", a.Boot, a.Try)
}

// maxRevList is the most of pv_rev.txt upstream reads: a longer list of
// revisions would be cut short there.
const maxRevList = 255

// parseRevList reads pv_rev.txt: the revisions installed on a boot
// partition, "35" after a reboot update, "35,36,37" after updates stacked
// without one. Trailing white space is dropped and spaces after a comma
// skipped, as upstream does.
func parseRevList(data []byte) ([]string, error) {
	if len(data) > maxRevList {
		return nil, fmt.Errorf("%d bytes: upstream reads %d", len(data), maxRevList)
	}
	s := strings.TrimRight(string(data), "\n\r ")
	if s == "" {
		return nil, fmt.Errorf("no revision")
	}
	revs := strings.Split(s, ",")
	for i, r := range revs {
		revs[i] = strings.TrimLeft(r, " ")
		if err := checkRev(revs[i]); err != nil {
			return nil, fmt.Errorf("revision %d: %w", i+1, err)
		}
	}
	return revs, nil
}

func formatRevList(revs []string) []byte {
	return []byte(strings.Join(revs, ",") + "\n")
}

// stackRevs returns the list for pv_rev.txt when rev is installed on a
// partition that holds prev (nil when the partition is not armed for a
// tryboot: a fresh list). rev joins the list unless it is there; when the
// list would outgrow what upstream reads, it starts afresh with rev and
// reboot is true: rev can then only be started by a reboot, or a crash
// after it would find its partition not listing the revisions before it.
func stackRevs(prev []string, rev string) (revs []string, reboot bool) {
	if len(prev) == 0 {
		return []string{rev}, false
	}
	for _, r := range prev {
		if r == rev {
			return []string{rev}, false
		}
	}
	revs = append(append([]string(nil), prev...), rev)
	if len(formatRevList(revs)) > maxRevList {
		return []string{rev}, true
	}
	return revs, false
}
