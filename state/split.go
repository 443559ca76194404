package state

import (
	"encoding/json"
	"errors"
)

// splitObject splits a JSON object into its members without decoding the
// values: the state's big values (_sigs JWS strings, inline documents) are
// sliced, not copied, and are decoded later only when needed. It returns the
// keys in document order. data must already be valid JSON (json.Valid);
// splitObject only finds boundaries.
func splitObject(data []byte) (keys []string, values []json.RawMessage, err error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, nil, errors.New("a state must be a JSON object")
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil, nil, nil
	}
	for i < len(data) {
		end := skipString(data, i)
		key, ok := decodeString(data[i:end])
		if !ok {
			return nil, nil, errors.New("bad object key")
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // ':'
		vend := skipValue(data, i)
		keys = append(keys, key)
		values = append(values, json.RawMessage(data[i:vend]))
		i = skipSpace(data, vend)
		if i < len(data) && data[i] == '}' {
			return keys, values, nil
		}
		i = skipSpace(data, i+1) // ','
	}
	return nil, nil, errors.New("unterminated object")
}

func skipSpace(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at d[i] == '"'.
func skipString(d []byte, i int) int {
	for i++; i < len(d); i++ {
		switch d[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(d)
}

// skipValue returns the index after the JSON value starting at d[i].
func skipValue(d []byte, i int) int {
	if i >= len(d) {
		return i
	}
	switch d[i] {
	case '"':
		return skipString(d, i)
	case '{', '[':
		depth := 0
		for ; i < len(d); i++ {
			switch d[i] {
			case '"':
				i = skipString(d, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(d)
	}
	for ; i < len(d); i++ {
		switch d[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return i
}

// splitArray returns the elements of a valid JSON array.
func splitArray(data []byte) ([]json.RawMessage, error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, errors.New("not an array")
	}
	i = skipSpace(data, i+1)
	var out []json.RawMessage
	if i < len(data) && data[i] == ']' {
		return out, nil
	}
	for i < len(data) {
		end := skipValue(data, i)
		out = append(out, json.RawMessage(data[i:end]))
		i = skipSpace(data, end)
		if i < len(data) && data[i] == ']' {
			return out, nil
		}
		i = skipSpace(data, i+1)
	}
	return nil, errors.New("unterminated array")
}

// decodeString decodes a valid JSON string; the common case without escapes
// is a plain slice conversion.
func decodeString(raw []byte) (string, bool) {
	raw = raw[skipSpace(raw, 0):]
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	plain := true
	for _, c := range body {
		if c == '\\' || c < 0x20 || c >= 0x80 {
			plain = false
			break
		}
	}
	if plain {
		return string(body), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}
