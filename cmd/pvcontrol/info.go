package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/pantavisor/pv/messages"
)

// metaPath is /user-meta/KEY or /device-meta/KEY.
func metaPath(base, key string) string {
	return base + "/" + url.PathEscape(key)
}

// listMeta prints {key: value} as a KEY VALUE table, sorted by key.
func listMeta(path string) func(*env, []string) int {
	return func(e *env, _ []string) int {
		return e.list(path, func(body []byte, w io.Writer) error {
			var m map[string]string
			if err := json.Unmarshal(body, &m); err != nil {
				return err
			}
			tw := newTable(w)
			row(tw, "KEY", "VALUE")
			for _, k := range slices.Sorted(maps.Keys(m)) {
				row(tw, k, m[k])
			}
			return tw.Flush()
		})
	}
}

// saveMeta is PUT base/KEY with VALUE as the raw body ("" without one, as
// upstream's script sends it; the server refuses an empty value).
func saveMeta(base string) func(*env, []string) int {
	return func(e *env, args []string) int {
		value := ""
		if len(args) > 1 {
			value = args[1]
		}
		res, err := e.c.do("PUT", metaPath(base, args[0]), "text/plain", []byte(value))
		_, code := e.answer(res, err)
		return code
	}
}

func deleteMeta(base string) func(*env, []string) int {
	return func(e *env, args []string) int {
		_, code := e.call("DELETE", metaPath(base, args[0]), nil)
		return code
	}
}

// printBody prints a GET's body as the server sends it.
func printBody(path string) func(*env, []string) int {
	return func(e *env, _ []string) int {
		body, code := e.call("GET", path, nil)
		if code != exitOK {
			return code
		}
		e.writeBody(body)
		return exitOK
	}
}

// writeBody prints body, ending it with a newline when it has none.
func (e *env) writeBody(body []byte) {
	_, _ = e.stdout.Write(body)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		fmt.Fprintln(e.stdout)
	}
}

// listLegacyConfig prints GET /config, {alias: value}, as a table.
func listLegacyConfig(e *env, _ []string) int {
	return e.list("/config", func(body []byte, w io.Writer) error {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		tw := newTable(w)
		row(tw, "KEY", "VALUE")
		for _, k := range slices.Sorted(maps.Keys(m)) {
			v := string(m[k])
			if s, err := strconv.Unquote(v); err == nil {
				v = s
			}
			row(tw, k, v)
		}
		return tw.Flush()
	})
}

// listConfig prints GET /config2 as a table.
func listConfig(e *env, _ []string) int {
	return e.list("/config2", func(body []byte, w io.Writer) error {
		var entries []struct {
			Key      string `json:"key"`
			Value    string `json:"value"`
			Modified string `json:"modified"`
		}
		if err := json.Unmarshal(body, &entries); err != nil {
			return err
		}
		tw := newTable(w)
		row(tw, "KEY", "VALUE", "MODIFIED")
		for _, en := range entries {
			row(tw, en.Key, en.Value, en.Modified)
		}
		return tw.Flush()
	})
}

func listGraph(e *env, _ []string) int {
	return e.list("/xconnect-graph", func(body []byte, w io.Writer) error {
		var links []messages.LinkInfo
		if err := json.Unmarshal(body, &links); err != nil {
			return err
		}
		tw := newTable(w)
		row(tw, "CONSUMER", "PROVIDER", "NAME", "TYPE", "ROLE", "INTERFACE", "TARGET", "SOCKET")
		for _, l := range links {
			row(tw, l.Consumer, l.Provider, l.Name, l.Type, l.Role, l.Interface, deref(l.Target), deref(l.Socket))
		}
		return tw.Flush()
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func listDaemons(e *env, _ []string) int {
	return e.list("/daemons", func(body []byte, w io.Writer) error {
		var ds []struct {
			Name    string `json:"name"`
			Pid     int    `json:"pid"`
			Respawn bool   `json:"respawn"`
		}
		if err := json.Unmarshal(body, &ds); err != nil {
			return err
		}
		tw := newTable(w)
		row(tw, "NAME", "PID", "RESPAWN")
		for _, d := range ds {
			pid := ""
			if d.Pid > 0 {
				pid = strconv.Itoa(d.Pid)
			}
			row(tw, d.Name, pid, strconv.FormatBool(d.Respawn))
		}
		return tw.Flush()
	})
}

// putAction is PUT PREFIX/NAME {"action": action}: a container's or a
// daemon's start, stop or restart.
func putAction(prefix, action string) func(*env, []string) int {
	return func(e *env, args []string) int {
		body := struct {
			Action string `json:"action"`
		}{action}
		_, code := e.call("PUT", prefix+url.PathEscape(args[0]), body)
		return code
	}
}

// daemonAction is PUT /daemons/NAME {"action": action}.
func daemonAction(action string) func(*env, []string) int {
	return putAction("/daemons/", action)
}

// daemonRestart is a stop then, when it succeeded, a start, as upstream's
// script does it.
func daemonRestart(e *env, args []string) int {
	if code := daemonAction("stop")(e, args); code != exitOK {
		return code
	}
	return daemonAction("start")(e, args)
}

// rawRequest sends METHOD PATH with BODY (or the contents of FILE, streamed)
// and prints the answer's body on 200, exactly as it came (no newline
// added); other answers are reported and exit
// as any command's. It is the escape hatch upstream's pvcurl served.
func rawRequest(e *env, args []string) int {
	method, path := args[0], args[1]
	if method == "" || strings.ToUpper(method) != method || strings.ContainsFunc(method, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		fmt.Fprintf(e.stderr, "pvcontrol: method %q: want an upper-case HTTP method such as GET\n", method)
		return exitUsage
	}
	if !strings.HasPrefix(path, "/") {
		fmt.Fprintf(e.stderr, "pvcontrol: path %q: want an absolute path such as /containers\n", path)
		return exitUsage
	}
	var (
		res *response
		err error
	)
	switch {
	case len(args) < 3:
		// Streamed: the answer may be an object larger than memory.
		res, err = e.c.stream(method, path, e.stdout, requestTimeout)
		_, code := e.answer(res, err)
		return code
	case strings.HasPrefix(args[2], "@"):
		f, size, ok := e.openRegular(args[2][1:])
		if !ok {
			return exitFailed
		}
		defer f.Close()
		res, err = e.c.upload(method, path, args[2][1:], f, size, uploadTimeout)
	default:
		res, err = e.c.do(method, path, "", []byte(args[2]))
	}
	body, code := e.answer(res, err)
	if code == exitOK {
		// Byte for byte: the body may be an object, not text.
		_, _ = e.stdout.Write(body)
	}
	return code
}

// openRegular opens a regular file to upload and returns its size; on
// failure it has said why on stderr.
func (e *env) openRegular(path string) (*os.File, int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "pvcontrol: %v\n", err)
		return nil, 0, false
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		fmt.Fprintf(e.stderr, "pvcontrol: %s is not a regular file\n", path)
		return nil, 0, false
	}
	return f, fi.Size(), true
}
