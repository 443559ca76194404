package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/pantavisor/pv/messages"
)

// command is one row of the command table. A later upstream command (cmd,
// devmeta, usrmeta, objects, steps, config, ...) is one more row.
type command struct {
	// spec is the command's words; "a|b" gives a word alternatives.
	spec string
	// args describes the arguments after the words, for usage.
	args     string
	min, max int
	help     string
	run      func(e *env, args []string) int
}

var commands = []command{
	{spec: "ls|list", help: "list containers", run: listContainers},
	{spec: "groups ls", help: "list groups", run: listGroups},
	{spec: "signal", args: "ready|alive [PAYLOAD]", min: 1, max: 2,
		help: "signal this container's status", run: sendSignal},
	{spec: "tree", help: "show the live actor tree", run: showTree},
	{spec: "containers start", args: "NAME", min: 1, max: 1,
		help: "start a stopped container", run: containerAction("start")},
	{spec: "containers stop", args: "NAME", min: 1, max: 1,
		help: "stop a container (disables its auto-recovery)", run: containerAction("stop")},
	{spec: "containers restart", args: "NAME", min: 1, max: 1,
		help: "stop then start a container", run: containerAction("restart")},
}

func (c command) synopsis() string {
	if c.args == "" {
		return c.spec
	}
	return c.spec + " " + c.args
}

// matches returns how many leading words select c, or 0.
func (c command) matches(words []string) int {
	spec := strings.Fields(c.spec)
	if len(words) < len(spec) {
		return 0
	}
	for i, alts := range spec {
		found := false
		for alt := range strings.SplitSeq(alts, "|") {
			if words[i] == alt {
				found = true
				break
			}
		}
		if !found {
			return 0
		}
	}
	return len(spec)
}

// findCommand selects the command with the longest matching words and
// returns it with the remaining arguments.
func findCommand(words []string) (command, []string, error) {
	best, n := command{}, 0
	for _, c := range commands {
		if m := c.matches(words); m > n {
			best, n = c, m
		}
	}
	if n == 0 {
		return command{}, nil, fmt.Errorf("unknown command %q", strings.Join(words, " "))
	}
	return best, words[n:], nil
}

// env is what a command runs with.
type env struct {
	c              *client
	stdout, stderr io.Writer
	json           bool
}

// call sends a request with an optional JSON body and returns the answer
// body on HTTP 200. Otherwise it has reported the failure on stderr and
// returns the exit code.
func (e *env) call(method, path string, body any) ([]byte, int) {
	var b []byte
	ct := ""
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			fmt.Fprintf(e.stderr, "pvcontrol: encode request: %v\n", err)
			return nil, exitFailed
		}
		ct = "application/json"
	}
	res, err := e.c.do(method, path, ct, b)
	if err != nil {
		// The URL is a placeholder; the socket is the interesting part.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		fmt.Fprintf(e.stderr, "pvcontrol: cannot reach control socket %s: %v\n", e.c.sock, err)
		return nil, exitFailed
	}
	if res.status != 200 {
		msg := errorMessage(res)
		fmt.Fprintf(e.stderr, "pvcontrol: %s (HTTP %d)\n", msg, res.status)
		return nil, exitCode(res.status, msg)
	}
	return res.body, exitOK
}

// list GETs a listing and prints it: the server's JSON, indented, with
// --json, else render's table.
func (e *env) list(path string, render func(body []byte, w io.Writer) error) int {
	body, code := e.call("GET", path, nil)
	if code != exitOK {
		return code
	}
	if e.json {
		var buf bytes.Buffer
		if err := json.Indent(&buf, body, "", "  "); err != nil {
			buf.Reset()
			buf.Write(body)
		}
		buf.WriteByte('\n')
		_, _ = e.stdout.Write(buf.Bytes())
		return exitOK
	}
	if err := render(body, e.stdout); err != nil {
		fmt.Fprintf(e.stderr, "pvcontrol: read answer of GET %s: %v\n", path, err)
		return exitFailed
	}
	return exitOK
}

func listContainers(e *env, _ []string) int {
	return e.list("/containers", func(body []byte, w io.Writer) error {
		var cs []messages.ContainerInfo
		if err := json.Unmarshal(body, &cs); err != nil {
			return err
		}
		return writeContainers(w, cs, now())
	})
}

func listGroups(e *env, _ []string) int {
	return e.list("/groups", func(body []byte, w io.Writer) error {
		var gs []messages.GroupInfo
		if err := json.Unmarshal(body, &gs); err != nil {
			return err
		}
		return writeGroups(w, gs)
	})
}

func showTree(e *env, _ []string) int {
	return e.list("/actors", func(body []byte, w io.Writer) error {
		var n messages.Node
		if err := json.Unmarshal(body, &n); err != nil {
			return err
		}
		return writeTree(w, &n, now())
	})
}

// sendSignal posts a signal for the container pvcontrol runs in: the server
// takes the container from the caller, not from the request.
func sendSignal(e *env, args []string) int {
	req := struct {
		Type    string `json:"type"`
		Payload string `json:"payload"`
	}{Type: args[0]}
	if len(args) > 1 {
		req.Payload = args[1]
	}
	_, code := e.call("POST", "/signal", req)
	return code
}

// containerAction is PUT /containers/NAME {"action": action}.
func containerAction(action string) func(*env, []string) int {
	return func(e *env, args []string) int {
		body := struct {
			Action string `json:"action"`
		}{action}
		_, code := e.call("PUT", "/containers/"+url.PathEscape(args[0]), body)
		return code
	}
}
