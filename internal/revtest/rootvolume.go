package revtest

import "strings"

// RootVolumeSHA is the object WithRootVolumes names for a root volume it
// adds.
const RootVolumeSHA = "5555555555555555555555555555555555555555555555555555555555555555"

// WithRootVolumes gives every container of the state document doc that
// names no root-volume the root volume the parser requires
// ("root.squashfs", and its object RootVolumeSHA unless doc has one), for
// tests whose states are otherwise minimal. It changes doc and returns it.
func WithRootVolumes(doc map[string]any) map[string]any {
	for key, v := range doc {
		name, ok := strings.CutSuffix(key, "/run.json")
		run, isMap := v.(map[string]any)
		if !ok || !isMap || name == "bsp" || strings.Contains(name, "/") {
			continue
		}
		if _, has := run["root-volume"]; has {
			continue
		}
		run["root-volume"] = "root.squashfs"
		if _, has := doc[name+"/root.squashfs"]; !has {
			doc[name+"/root.squashfs"] = RootVolumeSHA
		}
	}
	return doc
}
