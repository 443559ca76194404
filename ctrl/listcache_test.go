package ctrl

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
)

func sampleList() []messages.ContainerInfo {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return []messages.ContainerInfo{
		{Name: "a", Group: "g", Status: messages.StatusStarted, Roles: []string{"mgmt"},
			Provides: []any{}, Consumes: []any{}, LastExit: &messages.Exit{Code: 1, At: at},
			AutoRecovery: messages.AutoRecovery{Type: "on-failure", NextRetryAt: &at}},
		{Name: "b", Group: "g", Status: messages.StatusReady},
	}
}

// Every field of ContainerInfo (and of its AutoRecovery) must take part
// in containersEqual: a field it missed would serve a stale answer.
func TestContainersEqualSeesEveryField(t *testing.T) {
	check := func(path string, set func(c *messages.ContainerInfo, v reflect.Value)) {
		t.Helper()
		a := sampleList()
		b := cloneContainers(a)
		if !containersEqual(a, b) {
			t.Fatalf("%s: a copy differs", path)
		}
		c := &b[1]
		set(c, reflect.ValueOf(c).Elem())
		if containersEqual(a, b) {
			t.Errorf("field %s changed, list still equal", path)
		}
	}
	ct := reflect.TypeFor[messages.ContainerInfo]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		if f.Name == "AutoRecovery" {
			for j := range f.Type.NumField() {
				g := f.Type.Field(j)
				check("AutoRecovery."+g.Name, func(_ *messages.ContainerInfo, v reflect.Value) {
					setSome(t, v.Field(i).Field(j))
				})
			}
			continue
		}
		check(f.Name, func(_ *messages.ContainerInfo, v reflect.Value) { setSome(t, v.Field(i)) })
	}
	// nil and empty encode differently (null, []).
	a, b := sampleList(), sampleList()
	b[0].Roles = nil
	a[0].Roles = []string{}
	if containersEqual(a, b) {
		t.Error("nil and empty roles compare equal")
	}
}

// setSome gives a zero-valued field of a supported kind a non-zero value.
func setSome(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Slice:
		v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), reflect.Zero(v.Type().Elem())))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	default:
		t.Fatalf("field of kind %s: teach setSome and containersEqual about it", v.Kind())
	}
}

func TestContainersCache(t *testing.T) {
	var c containersCache
	list := sampleList()
	first, err := c.encode(list)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(list)
	if !bytes.Equal(first, want) {
		t.Fatalf("got %s, want %s", first, want)
	}
	again, _ := c.encode(sampleList())
	if &again[0] != &first[0] {
		t.Error("an equal list was encoded again")
	}
	// The same list handed out again is the same answer.
	if same, _ := c.encode(list); &same[0] != &first[0] {
		t.Error("the same list was encoded again")
	}
	// A changed list, even one equal but for a pointed-to value, gets a new
	// answer (a backend hands out a new list for every change).
	list = cloneContainers(list)
	list[1].Status = messages.StatusStopped
	list[0].LastExit.Code = 2
	got, _ := c.encode(list)
	if want, _ := json.Marshal(list); !bytes.Equal(got, want) {
		t.Fatalf("after a change: got %s, want %s", got, want)
	}
	// Lists with provides or consumes are encoded every time.
	list = cloneContainers(list)
	list[0].Provides = []any{map[string]any{"name": "x"}}
	got, _ = c.encode(list)
	list = cloneContainers(list)
	list[0].Provides = []any{map[string]any{"name": "y"}}
	got2, _ := c.encode(list)
	if bytes.Equal(got, got2) {
		t.Error("an uncacheable list was served from the cache")
	}
}
