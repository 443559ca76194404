package state

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
)

// object reads one JSON object with exact key matching. Every accessor
// records the key as known; finish() warns about the keys nobody asked for.
// Type errors are reported with the full key path and the value is treated
// as absent, so one bad field does not hide the others.
type object struct {
	c    *collector
	file string
	path string
	m    map[string]json.RawMessage
	used map[string]bool
}

// newObject decodes raw as a JSON object. It reports an error and returns nil
// when raw is not an object.
func newObject(c *collector, file, path string, raw json.RawMessage) *object {
	if kind(raw) != '{' {
		c.errorf(file, path, "must be a JSON object, got %s", describe(raw))
		return nil
	}
	keys, values, err := splitObject(raw) // raw is part of a validated document
	if err != nil {
		c.errorf(file, path, "not valid JSON: %v", err)
		return nil
	}
	m := make(map[string]json.RawMessage, len(keys))
	for i, k := range keys {
		if _, dup := m[k]; dup {
			c.errorf(file, joinPath(path, k), "key appears more than once")
			continue
		}
		m[k] = values[i]
	}
	return &object{c: c, file: file, path: path, m: m, used: make(map[string]bool, len(m))}
}

// peekName returns the first non-empty string among keys of the JSON object
// raw, without reporting anything: the label of an array element for
// itemPath, read before the element itself is checked. "" when raw is not an
// object or has none of the keys as a string.
func peekName(raw json.RawMessage, keys ...string) string {
	if kind(raw) != '{' {
		return ""
	}
	ks, vs, err := splitObject(raw)
	if err != nil {
		return ""
	}
	for _, want := range keys {
		for i, k := range ks {
			if k != want {
				continue
			}
			if s, ok := decodeString(vs[i]); ok && s != "" {
				return s
			}
			break // a duplicate key is an error reported elsewhere
		}
	}
	return ""
}

// kind returns the first significant byte of a JSON value: '{', '[', '"',
// 't'/'f' (booleans), 'n' (null) or a digit/'-' for numbers; 0 for nothing.
func kind(raw json.RawMessage) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// describe names the JSON type of raw for error messages.
func describe(raw json.RawMessage) string {
	switch k := kind(raw); {
	case k == '{':
		return "an object"
	case k == '[':
		return "an array"
	case k == '"':
		return "a string"
	case k == 't' || k == 'f':
		return "a boolean"
	case k == 'n':
		return "null"
	case k == '-' || (k >= '0' && k <= '9'):
		return "a number"
	}
	return "nothing"
}

func (o *object) at(key string) string { return joinPath(o.path, key) }

// has reports whether key is present (and marks it known).
func (o *object) has(key string) bool {
	o.used[key] = true
	_, ok := o.m[key]
	return ok
}

// raw returns the raw value of key and marks it known.
func (o *object) raw(key string) (json.RawMessage, bool) {
	o.used[key] = true
	v, ok := o.m[key]
	return v, ok
}

// str returns a string field.
func (o *object) str(key string) (string, bool) {
	raw, ok := o.raw(key)
	if !ok {
		return "", false
	}
	s, ok := decodeString(raw)
	if !ok {
		o.c.errorf(o.file, o.at(key), "must be a string, got %s", describe(raw))
		return "", false
	}
	return s, true
}

// integer returns an integer field. Upstream reads numbers as token text with
// atoi, so a numeric string is accepted too, with a warning.
func (o *object) integer(key string) (int64, bool) {
	return numeric(o, key, "an integer", func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
}

// number returns a floating-point field (numeric strings accepted with a
// warning, as for integer).
func (o *object) number(key string) (float64, bool) {
	return numeric(o, key, "a number", func(s string) (float64, error) { return strconv.ParseFloat(s, 64) })
}

// numeric reads a JSON number, or a string holding one, with parse.
func numeric[T any](o *object, key, what string, parse func(string) (T, error)) (T, bool) {
	var zero T
	raw, ok := o.raw(key)
	if !ok {
		return zero, false
	}
	text := string(bytes.TrimSpace(raw))
	if kind(raw) == '"' {
		if s, ok := decodeString(raw); ok {
			if v, err := parse(s); err == nil {
				o.c.warnf(o.file, o.at(key), "is a string; write it as a number")
				return v, true
			}
		}
		o.c.errorf(o.file, o.at(key), "must be %s, got %s", what, text)
		return zero, false
	}
	v, err := parse(text)
	if err != nil {
		o.c.errorf(o.file, o.at(key), "must be %s, got %s", what, describeValue(raw))
		return zero, false
	}
	return v, true
}

// boolean returns a boolean field; the strings "true"/"false" are accepted
// with a warning because upstream compares token text.
func (o *object) boolean(key string) (bool, bool) {
	raw, ok := o.raw(key)
	if !ok {
		return false, false
	}
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		return true, true
	case "false":
		return false, true
	case `"true"`:
		o.c.warnf(o.file, o.at(key), "is a string; write it as the literal true")
		return true, true
	case `"false"`:
		o.c.warnf(o.file, o.at(key), "is a string; write it as the literal false")
		return false, true
	}
	o.c.errorf(o.file, o.at(key), "must be true or false, got %s", describeValue(raw))
	return false, false
}

// strings returns an array-of-strings field.
func (o *object) strings(key string) ([]string, bool) {
	raw, ok := o.raw(key)
	if !ok {
		return nil, false
	}
	return o.stringList(o.at(key), raw)
}

func (o *object) stringList(path string, raw json.RawMessage) ([]string, bool) {
	items, err := splitArray(raw)
	if kind(raw) != '[' || err != nil {
		o.c.errorf(o.file, path, "must be an array of strings, got %s", describe(raw))
		return nil, false
	}
	out := make([]string, 0, len(items))
	good := true
	for i, it := range items {
		s, ok := decodeString(it)
		if !ok {
			o.c.errorf(o.file, indexPath(path, i), "must be a string, got %s", describe(it))
			good = false
			continue
		}
		out = append(out, s)
	}
	return out, good
}

// child returns a nested object field.
func (o *object) child(key string) (*object, bool) {
	raw, ok := o.raw(key)
	if !ok {
		return nil, false
	}
	c := newObject(o.c, o.file, o.at(key), raw)
	return c, c != nil
}

// array returns the elements of an array field.
func (o *object) array(key string) ([]json.RawMessage, bool) {
	raw, ok := o.raw(key)
	if !ok {
		return nil, false
	}
	items, err := splitArray(raw)
	if kind(raw) != '[' || err != nil {
		o.c.errorf(o.file, o.at(key), "must be an array, got %s", describe(raw))
		return nil, false
	}
	return items, true
}

// keys returns the object's keys in sorted order.
func (o *object) keys() []string {
	ks := make([]string, 0, len(o.m))
	for k := range o.m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// finish warns once about every key that no accessor asked for: upstream
// ignores unknown keys, so they must not fail a state, but a typo such as
// "restart_polcy" deserves to be seen.
func (o *object) finish() {
	for _, k := range o.keys() {
		if !o.used[k] {
			o.c.warnf(o.file, o.at(k), "unknown key, ignored")
		}
	}
}

// describeValue quotes a short JSON value for an error message, or names its
// type when it is long.
func describeValue(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) <= 40 {
		return string(t)
	}
	return describe(raw)
}
