package main

import (
	"encoding/json"
	"strconv"

	"github.com/pantavisor/pv/messages"
)

// decodeContainers reads the body of GET /containers into what the table
// shows: name, group, status, goal, policy, pid, uptime and last exit.
//
// encoding/json took 1.3-1.8 ms of the 11 that `pvcontrol ls` of 100
// containers cost on the development machine: in a process that lives for
// one answer its reflection caches are built for every run, and that, not
// the bytes, is the cost. rowScanner reads the answer pv-ctrl writes (a flat array
// of objects with plain strings and integers) in one pass instead. Any
// other shape (an escape in a string, a case-folded key, a fraction, a
// null where a value was expected, bad JSON anywhere) makes it give up,
// and encoding/json decodes the body as before, with its own errors.
// Fields the table does not show are checked as JSON, not against their
// Go types. FuzzDecodeContainers holds the two to the same result.
func decodeContainers(body []byte) ([]messages.ContainerInfo, error) {
	if cs, ok := scanContainers(body); ok {
		return cs, nil
	}
	var cs []messages.ContainerInfo
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, err
	}
	return cs, nil
}

// scanContainers is the one-pass read of decodeContainers; ok is false
// when it gave up.
func scanContainers(body []byte) (cs []messages.ContainerInfo, ok bool) {
	s := rowScanner{b: body}
	// Counted first, so that the rows take one allocation: growing the
	// slice by appends leaves about twice its size of fresh pages behind
	// (a 100-container answer: 19 page faults against 8), and each is
	// dearer than the second pass over the bytes.
	n := s.count()
	if n < 0 {
		return nil, false
	}
	cs = make([]messages.ContainerInfo, 0, n)
	ok = s.array(func() bool {
		var c messages.ContainerInfo
		if !s.object(func(key []byte) bool { return s.containerField(key, &c) }) {
			return false
		}
		cs = append(cs, c)
		return true
	})
	if !ok || !s.end() {
		return nil, false
	}
	return cs, true
}

// containerField reads the value of key into c, or skips it.
func (s *rowScanner) containerField(key []byte, c *messages.ContainerInfo) bool {
	var ok bool
	switch string(key) {
	case "name":
		c.Name, ok = s.str()
	case "group":
		c.Group, ok = s.str()
	case "status":
		var st string
		st, ok = s.str()
		c.Status = messages.Status(st)
	case "status_goal":
		c.StatusGoal, ok = s.str()
	case "restart_policy":
		c.RestartPolicy, ok = s.str()
	case "pid":
		ok = s.intTo(&c.Pid)
	case "uptime_secs":
		c.UptimeSecs, ok = s.integer(64)
	case "last_exit":
		if s.literal("null") {
			c.LastExit = nil
			return true
		}
		// A second last_exit adds to the first, as in encoding/json.
		e := c.LastExit
		if e == nil {
			e = &messages.Exit{}
			c.LastExit = e
		}
		ok = s.object(func(key []byte) bool { return s.exitField(key, e) })
	default:
		// encoding/json matches keys regardless of case; such a key
		// is left to it.
		if knownFolded(key, "name", "group", "status", "status_goal", "restart_policy", "pid", "uptime_secs", "last_exit") {
			return false
		}
		return s.skip()
	}
	return ok
}

func (s *rowScanner) exitField(key []byte, e *messages.Exit) bool {
	var ok bool
	switch string(key) {
	case "code":
		ok = s.intTo(&e.Code)
	case "signal":
		ok = s.intTo(&e.Signal)
	case "time":
		start := s.i
		if _, ok = s.str(); ok {
			// Time's own decoding, so that what it accepts is the same.
			ok = e.At.UnmarshalJSON(s.b[start:s.i]) == nil
		}
	default:
		if knownFolded(key, "code", "signal", "time") {
			return false
		}
		return s.skip()
	}
	return ok
}

// knownFolded reports whether key equals one of names when case is
// ignored (ASCII; a key with other bytes is not plain and was refused).
func knownFolded(key []byte, names ...string) bool {
	for _, n := range names {
		if len(n) != len(key) {
			continue
		}
		same := true
		for i := range key {
			a, b := key[i], n[i]
			if 'A' <= a && a <= 'Z' {
				a += 'a' - 'A'
			}
			if a != b {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

// rowScanner reads plain JSON from b; every method reports whether what
// it wanted was there, and on false the whole scan is abandoned.
type rowScanner struct {
	b     []byte
	i     int
	depth int // of the values skip is in
}

// maxDepth bounds the nesting skip follows; encoding/json's limit is
// 10000 and reports it.
const maxDepth = 1000

func (s *rowScanner) ws() {
	// pv-ctrl's JSON has none: one comparison settles most calls.
	for s.i < len(s.b) && s.b[s.i] <= ' ' {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next consumes c, after white space, if it is there.
func (s *rowScanner) next(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (s *rowScanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

func (s *rowScanner) literal(word string) bool {
	s.ws()
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// object reads {"key": value, ...}, field reading each value.
func (s *rowScanner) object(field func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		key, ok := s.rawStr()
		if !ok || !s.next(':') || !field(key) {
			return false
		}
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// array reads [value, ...], elem reading each value.
func (s *rowScanner) array(elem func() bool) bool {
	if !s.next('[') {
		return false
	}
	if s.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.next(']') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// count is the number of elements of the array at the scanner's
// position, which it leaves where it was (s is a copy); -1 when it gives
// up on the array.
func (s rowScanner) count() int {
	n := 0
	if !s.array(func() bool { n++; return s.skip() }) {
		return -1
	}
	return n
}

// rawStr reads a string of printable ASCII without escapes and returns
// its bytes, in b.
func (s *rowScanner) rawStr() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	// Indexed by a local: the scanner's own index would be stored back
	// on every byte.
	b, start := s.b, s.i
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return b[start:i], true
		case c < 0x20 || c == '\\' || c >= 0x80:
			// A control byte is bad JSON; an escape or a byte past
			// ASCII (UTF-8 to check) is encoding/json's to read.
			s.i = i
			return nil, false
		}
	}
	s.i = len(b)
	return nil, false
}

func (s *rowScanner) str() (string, bool) {
	b, ok := s.rawStr()
	return string(b), ok
}

// integer reads a JSON integer that fits in bits.
func (s *rowScanner) integer(bits int) (int64, bool) {
	s.ws()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	// JSON allows no leading zero; a fraction or exponent would not fit
	// an int in encoding/json either.
	if s.i == digits || (s.b[digits] == '0' && s.i-digits > 1) ||
		(s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E')) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(s.b[start:s.i]), 10, bits)
	return n, err == nil
}

// intTo reads an integer into *p, refusing one an int cannot hold (32
// bits on some devices), as encoding/json does.
func (s *rowScanner) intTo(p *int) bool {
	n, ok := s.integer(strconv.IntSize)
	*p = int(n)
	return ok
}

// skip reads over any JSON value, checking it as it goes.
func (s *rowScanner) skip() bool {
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.rawStr()
		return ok
	case (c == '{' || c == '[') && s.depth >= maxDepth:
		return false
	case c == '{':
		// No defer: with this many returns Go would not open-code it,
		// and a deferred call per value was a tenth of the decode.
		s.depth++
		ok := s.object(func([]byte) bool { return s.skip() })
		s.depth--
		return ok
	case c == '[':
		s.depth++
		ok := s.array(s.skip)
		s.depth--
		return ok
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	}
	return false
}

// number reads over a JSON number of any form.
func (s *rowScanner) number() bool {
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := s.run()
	if digits == 0 || (digits > 1 && s.b[s.i-digits] == '0') {
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.run() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.run() == 0 {
			return false
		}
	}
	return true
}

// run reads over decimal digits and returns how many.
func (s *rowScanner) run() int {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}
