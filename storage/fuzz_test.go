package storage

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseProgress feeds arbitrary bytes to the progress parser: it must
// never panic, what it accepts must be valid, and what it accepts must
// survive a write and a read unchanged (the file the store writes is the
// file it reads back).
func FuzzParseProgress(f *testing.F) {
	for _, seed := range []string{
		`{"status":"NEW","status-msg":"Update not yet installed","progress":0,"retries":0}`,
		`{"status":"DOWNLOADING","status-msg":"Downloading update artifacts, retry 1 of 10","progress":25,"retries":1,` +
			`"downloads":{"total":{"object_name":"root.squashfs","object_id":"x","total_size":10,"total_downloaded":3,"start_time":1,"current_time":2}}}`,
		`{"status":"ERROR","status-msg":"Status goal not reached","progress":100,"retries":0,"logs":"line\n"}`,
		`{"status":"DONE","progress":100,"extra":{"nested":[1,2]}}`,
		`{"status":"NEW","progress":1e2}`,
		`{"status":"NEW","status-msg":"\ud800"}`,
		`null`, `[]`, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProgress(data)
		if err != nil {
			return
		}
		if !p.Status.Known() || p.Progress < 0 || p.Progress > 100 || p.Retries < 0 {
			t.Fatalf("accepted an invalid progress: %+v", p)
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("marshal %+v: %v", p, err)
		}
		back, err := ParseProgress(out)
		if err != nil {
			t.Fatalf("re-parse %s: %v", out, err)
		}
		if !reflect.DeepEqual(p, back) {
			t.Fatalf("round trip changed the progress:\n%+v\n%+v", p, back)
		}
	})
}

// FuzzParseRefs feeds arbitrary state JSON to the reader of what a trail
// lays out: it must never panic, and what it and checkTree accept must be
// a set of files that can all exist: clean relative keys, none in the
// trail's own .pv/ or .pvr/, none below another.
func FuzzParseRefs(f *testing.F) {
	sha := "1111111111111111111111111111111111111111111111111111111111111111"
	for _, seed := range []string{
		`{"#spec":"pantavisor-service-system@1","a/run.json":{"name":"a"},"a/root.squashfs":"` + sha + `"}`,
		`{"a/b":"` + sha + `","a/b/c":"` + sha + `"}`,
		`{"a/b.json":{},"a/b.json/c":1,"a/b.json/d.json":[]}`,
		`{"_sigs/x":"` + sha + `","#spec":"` + sha + `","x/../y":"` + sha + `"}`,
		`{".pv/progress":{},"a//b":"` + sha + `"}`,
		`[]`, `null`, `{"a":`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		refs, err := ParseRefs(data)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("error %v is not ErrBadState", err)
			}
			return
		}
		keys := map[string]bool{}
		for k, sha := range refs.Objects {
			if !IsSHA256(sha) {
				t.Fatalf("object %q names %q", k, sha)
			}
			keys[k] = true
		}
		for k := range refs.JSONs {
			if keys[k] {
				t.Fatalf("key %q is an object and a document", k)
			}
			keys[k] = true
		}
		for k := range keys {
			if checkKey(k) != nil {
				t.Fatalf("accepted key %q that checkKey refuses", k)
			}
		}
		if refs.checkTree() != nil {
			return
		}
		for k := range keys {
			for d := range keys {
				if strings.HasPrefix(k, d+"/") {
					t.Fatalf("key %q below key %q accepted", k, d)
				}
			}
		}
	})
}
