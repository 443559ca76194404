package state

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the state parser: it must never panic,
// must report invalid input as problems (never a nil model with nil error),
// and must be deterministic.
func FuzzParse(f *testing.F) {
	for _, file := range fixtureFiles(f) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
	}
	base, err := jsonMarshal(baseState())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(base, false)
	f.Add(base, true)
	f.Add([]byte(`{"#spec":"pantavisor-service-system@1","device.json":{"groups":[{"name":"a"}],"network":{"pools":{"p":{"subnet":"10.0.0.0/30","gateway":"10.0.0.1","bridge":"b"}}}},"x/run.json":{"name":"x","root-volume":"r","network":{"pool":"p","ip":"10.0.0.2"}},"x/r":"`+sha1+`"}`), true)
	f.Add([]byte(`{"#spec":"pantavisor-service-system@1","device.json":{"groups":[{"name":"a"}],"ingress":[{"type":"http","external":":80/x/","provider":"p","service":"s"}]},`+
		`"p/run.json":{"name":"p","root-volume":"dm:r","config":"c.json"},"p/services.json":[{"name":"s","type":"http","port":8},{"name":"d","type":"drm","socket":"/dev/dri/card0"}],"p/r":"`+sha1+`","p/c.json":{},`+
		`"q/run.json":{"name":"q","root-volume":"r","services":{"required":[{"name":"s","target":":81/y"}],"optional":["d","s"]}},"q/r":"`+sha2+`"}`), true)
	f.Fuzz(func(t *testing.T, data []byte, appengine bool) {
		st, err := Parse(data, Options{AppEngine: appengine})
		if st == nil {
			t.Fatal("nil model")
		}
		if err != nil && len(Problems(err)) == 0 {
			t.Fatalf("error without problems: %v", err)
		}
		st2, err2 := Parse(data, Options{AppEngine: appengine})
		if (err == nil) != (err2 == nil) || len(st.Containers) != len(st2.Containers) || len(st.Warnings) != len(st2.Warnings) {
			t.Fatal("parse is not deterministic")
		}
		if err == nil {
			checkAccepted(t, st)
		}
	})
}

// checkAccepted checks what every accepted state promises the packages
// that run it.
func checkAccepted(t *testing.T, st *State) {
	t.Helper()
	for _, c := range st.Containers {
		if !validContainerName(c.Name) || reservedDirs[c.Name] != "" || len(c.Name) > maxNameLen {
			t.Fatalf("valid state with container name %q", c.Name)
		}
		if st.Group(c.Group) == nil {
			t.Fatalf("valid state with container %s in unknown group %q", c.Name, c.Group)
		}
		for _, e := range c.Exports {
			if e.Socket == "" && (e.Port <= 0 || socketOnlyTypes[e.Type]) {
				t.Fatalf("valid state with export %s/%s (%s) reachable by neither socket nor port", c.Name, e.Name, e.Type)
			}
		}
		// What needObject checked must be there for the engine: the
		// config, the root volume and the volumes, among the container's
		// objects.
		named := append([]string{c.Config, c.RootVolume}, c.Volumes...)
		for i, name := range named {
			if i > 0 { // volumes may carry a handler: "dm:root.squashfs"
				if _, f, ok := strings.Cut(name, ":"); ok {
					name = f
				}
			}
			if name == "" && i == 0 {
				continue // no config
			}
			if _, ok := c.Objects[c.Name+"/"+name]; !ok {
				t.Fatalf("valid state: container %s names %q, which is not among its objects", c.Name, name)
			}
		}
		if n := c.Network; n != nil && n.Mode == NetPool && st.Pool(n.Pool) == nil {
			t.Fatalf("valid state: container %s in unknown pool %q", c.Name, n.Pool)
		}
	}
}

// FuzzSplitObject checks the hand-written top-level splitter against
// encoding/json on every valid object without duplicate keys.
func FuzzSplitObject(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":"x\"}","c":{"d":[1,{"e":"]"}]}}`))
	f.Add([]byte(` { "k" : [ ] , "l":null } `))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want map[string]json.RawMessage
		if json.Unmarshal(data, &want) != nil || want == nil {
			return
		}
		keys, values, err := splitObject(data)
		if err != nil {
			t.Fatalf("split failed on valid object: %v", err)
		}
		got := map[string]json.RawMessage{}
		for i, k := range keys {
			got[k] = values[i]
		}
		if len(got) != len(want) {
			return // duplicate keys: encoding/json keeps the last one
		}
		for k, v := range want {
			var a, b any
			if json.Unmarshal(v, &a) != nil || json.Unmarshal(got[k], &b) != nil {
				t.Fatalf("key %q: bad value slice %q", k, got[k])
			}
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("key %q: %q vs %q", k, got[k], v)
			}
		}
	})
}
