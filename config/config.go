package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sentinel errors of Set and the loaders; test with errors.Is. Each refusal
// is a *SetError naming the key, level and value.
var (
	// ErrUnknownKey: the name is neither a key nor a legacy alias.
	ErrUnknownKey = errors.New("unknown key")
	// ErrLevelNotAllowed: the key may not be set at that level (or the
	// level is not a single defined level).
	ErrLevelNotAllowed = errors.New("level not allowed for key")
	// ErrLowerLevel: a higher level already set the key.
	ErrLowerLevel = errors.New("key already set at a higher level")
	// ErrBadValue: the value is not valid for the key's kind.
	ErrBadValue = errors.New("bad value")
)

// SetError is why one write was refused. It unwraps to one of the
// sentinels above.
type SetError struct {
	Key    string // canonical name when the key is known, else as written
	Level  Level  // the level of the refused write
	Value  string // the value as written
	Err    error  // the sentinel
	Reason string // details, e.g. "want one of uboot, grub, ..."
}

// Error renders the refusal as "set config KEY="VALUE" at level "LEVEL":
// SENTINEL: REASON".
func (e *SetError) Error() string {
	msg := fmt.Sprintf("set config %s=%q at level %q: %v", e.Key, e.Value, e.Level.String(), e.Err)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Unwrap returns the sentinel.
func (e *SetError) Unwrap() error { return e.Err }

// Value is a key's effective value and the level that set it. It marshals
// to upstream's GET /config2 element: {"key", "value", "modified"}.
type Value struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Level Level  `json:"modified"`
}

// Entry is one line of All: the effective Value plus what the key table
// says about the key. Only the Value fields appear in JSON, so a []Entry
// marshals exactly as GET /config2.
type Entry struct {
	Value
	Kind    Kind   `json:"-"`
	Default string `json:"-"`
	Allowed Level  `json:"-"`
}

type slot struct {
	v     parsed
	level Level
}

// Config is the layered configuration of one Pantavisor instance. It is
// safe for concurrent use: readers share a sync.RWMutex and every loader
// applies its whole source under one write lock, so a reader never sees a
// source half applied. The zero value is not usable; call New.
type Config struct {
	mu    sync.RWMutex
	slots []slot // indexed like table
}

// New returns a Config holding every key's default at LevelDefault.
func New() *Config {
	c := &Config{slots: make([]slot, len(table))}
	for i := range table {
		p, err := table[i].normalize(table[i].Default)
		if err != nil {
			// The table is static; TestDefaultsValid keeps this unreachable.
			panic(fmt.Sprintf("config: default of %s: %v", table[i].Name, err))
		}
		c.slots[i] = slot{v: p}
	}
	return c
}

// Set writes key=value at level. The write is applied only if the key
// allows the level and no higher level has set it; otherwise, or if the
// value is invalid, nothing changes and the error is a *SetError wrapping
// ErrUnknownKey, ErrLevelNotAllowed, ErrLowerLevel or ErrBadValue. Keys
// match case-insensitively; a legacy dotted alias ("log.level") is
// translated, and warning then says so (even when the write is refused).
func (c *Config) Set(key, value string, level Level) (warning string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, warning, err = c.setLocked(key, value, level, false)
	return warning, err
}

// SetArgs writes key=value at LevelArgs, bypassing the allowed levels and
// precedence: it is the path for the binary's own arguments, e.g.
// appengine forcing PV_SYSTEM_INIT_MODE=appengine, as upstream does. The
// value is still validated. LevelArgs is below every file layer, so call it
// after the boot layers are loaded or they will replace it.
func (c *Config) SetArgs(key, value string) (warning string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, warning, err = c.setLocked(key, value, LevelArgs, true)
	return warning, err
}

// setLocked is Set with c.mu held. It returns the applied Value.
func (c *Config) setLocked(key, value string, level Level, force bool) (Value, string, error) {
	refuse := func(name string, sentinel error, reason string) error {
		return &SetError{Key: name, Level: level, Value: value, Err: sentinel, Reason: reason}
	}
	i, legacy, ok := resolve(key)
	if !ok {
		return Value{}, "", refuse(key, ErrUnknownKey, "")
	}
	k := &table[i]
	var warning string
	if legacy {
		warning = fmt.Sprintf("translated legacy key %q to %q", key, k.Name)
	}
	if !level.single() || level == LevelDefault {
		return Value{}, warning, refuse(k.Name, ErrLevelNotAllowed, "not a settable level")
	}
	if !force {
		if k.Allowed&level == 0 {
			return Value{}, warning, refuse(k.Name, ErrLevelNotAllowed, "allowed: "+k.Allowed.String())
		}
		if cur := c.slots[i].level; level < cur {
			return Value{}, warning, refuse(k.Name, ErrLowerLevel, "set at "+cur.String())
		}
	}
	p, err := k.normalize(value)
	if err != nil {
		return Value{}, warning, refuse(k.Name, ErrBadValue, err.Error())
	}
	c.slots[i] = slot{v: p, level: level}
	return Value{Key: k.Name, Value: p.s, Level: level}, warning, nil
}

// Get returns the effective value of key (canonical name or alias, any
// case) and the level that set it; ok is false for an unknown key.
func (c *Config) Get(key string) (v Value, ok bool) {
	i, _, ok := resolve(key)
	if !ok {
		return Value{}, false
	}
	c.mu.RLock()
	s := c.slots[i]
	c.mu.RUnlock()
	return Value{Key: table[i].Name, Value: s.v.s, Level: s.level}, true
}

// All returns every key's effective value, sorted by key: what
// GET /config2 serves.
func (c *Config) All() []Entry {
	out := make([]Entry, len(table))
	c.mu.RLock()
	for i := range table {
		k := &table[i]
		out[i] = Entry{
			Value:   Value{Key: k.Name, Value: c.slots[i].v.s, Level: c.slots[i].level},
			Kind:    k.Kind,
			Default: k.Default,
			Allowed: k.Allowed,
		}
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Legacy returns the effective values keyed by each key's first legacy
// alias ("log.level"), typed as upstream's GET /config serves them: bools
// as bool, integers, sizes and seconds as int, enums as their index in
// KeyInfo.Values, lists as their bit mask, everything else as string.
func (c *Config) Legacy() map[string]any {
	out := make(map[string]any, len(table))
	c.mu.RLock()
	defer c.mu.RUnlock()
	for i := range table {
		k := &table[i]
		out[k.Aliases[0]] = k.legacyValue(c.slots[i].v)
	}
	return out
}

// read returns the slot of a registered key and its table entry. An
// unknown key is a programmer error; the accessors then return the zero
// value rather than panic, and TestKeyNamesUsedAreRegistered catches it.
func (c *Config) read(key string) (parsed, *KeyInfo, bool) {
	i, _, ok := resolve(key)
	if !ok {
		return parsed{}, nil, false
	}
	c.mu.RLock()
	p := c.slots[i].v
	c.mu.RUnlock()
	return p, &table[i], true
}

// Int returns the effective value of an int, size (bytes) or seconds key;
// 0 for other kinds or an unknown key.
func (c *Config) Int(key string) int {
	p, k, ok := c.read(key)
	if !ok || !k.Kind.numeric() {
		return 0
	}
	return p.n
}

// Bool returns the effective value of a bool key; false for other kinds or
// an unknown key.
func (c *Config) Bool(key string) bool {
	p, k, ok := c.read(key)
	return ok && k.Kind == KindBool && p.n != 0
}

// String returns the effective value of any key in its normalised string
// form (bools "0"/"1", enums their canonical word); "" for an unknown key.
func (c *Config) String(key string) string {
	p, _, _ := c.read(key)
	return p.s
}

// Duration returns the effective value of a seconds key as a
// time.Duration; 0 for other kinds or an unknown key.
func (c *Config) Duration(key string) time.Duration {
	p, k, ok := c.read(key)
	if !ok || k.Kind != KindSeconds {
		return 0
	}
	return time.Duration(p.n) * time.Second
}
