package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
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
	{spec: "containers ls|list", help: "list containers (as ls)", run: listContainers},
	{spec: "containers start", args: "NAME", min: 1, max: 1,
		help: "start a stopped container", run: containerAction("start")},
	{spec: "containers stop", args: "NAME", min: 1, max: 1,
		help: "stop a container (disables its auto-recovery)", run: containerAction("stop")},
	{spec: "containers restart", args: "NAME", min: 1, max: 1,
		help: "stop then start a container", run: containerAction("restart")},
	{spec: "objects ls|list", help: "list the objects in storage", run: listObjects},
	{spec: "objects put", args: "FILE|-SIZE [SHA256]", min: 1, max: 2,
		help: "upload FILE, or SIZE bytes of stdin, as an object (SHA256 of a FILE computed when not given)", run: putObject},
	{spec: "objects get", args: "SHA256", min: 1, max: 1,
		help: "print object SHA256, checked against its name (-f FILE to save it)", run: getObject},
	{spec: "steps ls|list", help: "list the revisions in storage", run: listSteps},
	{spec: "steps get", args: "REV", min: 1, max: 1, help: "print revision REV's state JSON", run: stepFile("")},
	{spec: "steps show-progress", args: "REV", min: 1, max: 1,
		help: "print revision REV's update progress", run: stepFile("/progress")},
	{spec: "steps put", args: "FILE locals/NAME", min: 2, max: 2,
		help: "install state JSON FILE as a local revision (objects first)", run: putStep},
	{spec: "steps install", args: "FILE.tgz [locals/NAME]", min: 1, max: 2,
		help: "upload a tarball's missing objects/ and install its json (NAME: the tarball's sha256)", run: installTarball},
	{spec: "cmd run", args: "REV", min: 1, max: 1, help: "start the update to revision REV", run: postCommand("LOCAL_RUN")},
	{spec: "cmd run-commit", args: "REV", min: 1, max: 1,
		help: "start the update to revision REV with a reboot", run: postCommand("LOCAL_RUN_COMMIT")},
	{spec: "cmd reboot", args: "[MSG]", max: 1, help: "reboot the device, logging MSG", run: postCommand("REBOOT_DEVICE")},
	{spec: "cmd poweroff", args: "[MSG]", max: 1, help: "power the device off, logging MSG", run: postCommand("POWEROFF_DEVICE")},
	{spec: "cmd reexec", args: "[MSG]", max: 1, help: "re-execute the supervisor from its file (an upgrade); containers keep running", run: postCommand("REEXEC_SUPERVISOR")},
	{spec: "cmd make-factory", args: "[REV]", max: 1,
		help: "make REV (default: the running one) the factory revision 0 and run it", run: postCommand("MAKE_FACTORY")},
	{spec: "cmd run-gc", help: "remove the revisions and objects not in use", run: postCommand("RUN_GC")},
	{spec: "cmd enable-ssh", help: "enable the debug ssh server", run: postCommand("ENABLE_SSH")},
	{spec: "cmd disable-ssh", help: "disable the debug ssh server", run: postCommand("DISABLE_SSH")},
	{spec: "cmd go-remote", help: "leave local mode for the hub", run: postCommand("GO_REMOTE")},
	{spec: "cmd unclaim", help: "forget the hub's credentials (no hub here: refused)", run: postCommand("UNCLAIM")},
	{spec: "storage gc", help: "remove the revisions and objects not in use and print the bytes freed", run: storageGC},
	{spec: "cmd defer-reboot", args: "TIMEOUT", min: 1, max: 1,
		help: "defer the debug shell's reboot", run: postCommand("DEFER_REBOOT")},
	// Metadata, configuration, information and raw requests (info.go).
	{spec: "devmeta ls|list", help: "list device metadata", run: listMeta("/device-meta")},
	{spec: "devmeta save|upload", args: "KEY [VALUE]", min: 1, max: 2,
		help: "set device metadata KEY to VALUE", run: saveMeta("/device-meta")},
	{spec: "devmeta delete", args: "KEY", min: 1, max: 1, help: "delete device metadata KEY", run: deleteMeta("/device-meta")},
	{spec: "usrmeta ls|list", help: "list user metadata", run: listMeta("/user-meta")},
	{spec: "usrmeta save", args: "KEY [VALUE]", min: 1, max: 2,
		help: "set user metadata KEY to VALUE (a config key is overridden)", run: saveMeta("/user-meta")},
	{spec: "usrmeta delete", args: "KEY", min: 1, max: 1, help: "delete user metadata KEY", run: deleteMeta("/user-meta")},
	{spec: "buildinfo", help: "print pantavisor's build information", run: printBody("/buildinfo")},
	{spec: "config ls|list", help: "list the configuration by legacy name (GET /config)", run: listLegacyConfig},
	{spec: "conf|configuration ls|list", help: "list the configuration and where each value comes from", run: listConfig},
	{spec: "graph ls|list", help: "list the xconnect service mesh links", run: listGraph},
	{spec: "daemons ls|list", help: "list pantavisor's daemons", run: listDaemons},
	{spec: "daemons start", args: "NAME", min: 1, max: 1, help: "start daemon NAME", run: daemonAction("start")},
	{spec: "daemons stop", args: "NAME", min: 1, max: 1, help: "stop daemon NAME", run: daemonAction("stop")},
	{spec: "daemons restart", args: "NAME", min: 1, max: 1, help: "stop then start daemon NAME", run: daemonRestart},
	{spec: "request", args: "METHOD PATH [BODY|@FILE]", min: 2, max: 3,
		help: "send any request and print the answer's body", run: rawRequest},
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
	stdin          io.Reader
	stdout, stderr io.Writer
	json           bool
	// msg is -m, the commit message for steps put and install.
	msg string
	// progress is where uploads show their progress; nil for nowhere.
	progress io.Writer
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
	return e.answer(res, err)
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
	// Buffered: stdout is not, and a render that wrote line by line would
	// make a system call of each line. A table writes once; bufio passes
	// a write larger than its buffer straight through, uncopied.
	out := bufio.NewWriter(e.stdout)
	if err := render(body, out); err != nil {
		fmt.Fprintf(e.stderr, "pvcontrol: read answer of GET %s: %v\n", path, err)
		return exitFailed
	}
	_ = out.Flush()
	return exitOK
}

func listContainers(e *env, _ []string) int {
	return e.list("/containers", func(body []byte, w io.Writer) error {
		cs, err := decodeContainers(body)
		if err != nil {
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
	return putAction("/containers/", action)
}

// postCommand is POST /commands {"op": op, "payload": the argument, or
// "" without one}, as upstream's pvcontrol sends it.
func postCommand(op string) func(*env, []string) int {
	return func(e *env, args []string) int {
		req := struct {
			Op      string `json:"op"`
			Payload string `json:"payload"`
		}{Op: op}
		if len(args) > 0 {
			req.Payload = args[0]
		}
		_, code := e.call("POST", "/commands", req)
		return code
	}
}

// storageGC is POST /storage/gc, as newer upstream scripts send it. It
// prints the server's answer, {"reclaimed": BYTES}, as upstream's does.
func storageGC(e *env, _ []string) int {
	body, code := e.call("POST", "/storage/gc", nil)
	if code == exitOK {
		e.writeBody(body)
	}
	return code
}

func listObjects(e *env, _ []string) int {
	return e.list("/objects", func(body []byte, w io.Writer) error {
		var objs []struct {
			SHA256 string `json:"sha256"`
			Size   string `json:"size"`
		}
		if err := json.Unmarshal(body, &objs); err != nil {
			return err
		}
		tw := newTable(w)
		row(tw, "SHA256", "SIZE")
		for _, o := range objs {
			row(tw, o.SHA256, o.Size)
		}
		return tw.Flush()
	})
}

// putObject streams a file to PUT /objects/SHA256. Without a SHA256 the
// file is read twice: once to name it, once to send it. "-SIZE" instead
// of the file is upstream's form for SIZE bytes read from stdin, which
// cannot be read twice: the SHA256 must be given.
func putObject(e *env, args []string) int {
	if n, ok := strings.CutPrefix(args[0], "-"); ok && isNumber(n) {
		return putObjectStdin(e, n, args[1:])
	}
	f, size, ok := e.openRegular(args[0])
	if !ok {
		return exitFailed
	}
	defer f.Close()
	var sha string
	if len(args) > 1 {
		sha = args[1]
	} else {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			fmt.Fprintf(e.stderr, "pvcontrol: hash %s: %v\n", args[0], err)
			return exitFailed
		}
		sha = hex.EncodeToString(h.Sum(nil))
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			fmt.Fprintf(e.stderr, "pvcontrol: rewind %s: %v\n", args[0], err)
			return exitFailed
		}
	}
	res, err := e.upload("/objects/"+url.PathEscape(sha), args[0], f, size)
	if _, code := e.answer(res, err); code != exitOK {
		return code
	}
	fmt.Fprintln(e.stdout, sha)
	return exitOK
}

// getObject streams object SHA256 to the output, hashing it on the way: a
// body cut short or not the object named is an error (and with -f leaves
// no file). The device answers 400 "Request has bad object name" for an
// object it does not hold, as upstream's does; that is said plainly.
func getObject(e *env, args []string) int {
	sha := args[0]
	h := sha256.New()
	sink, done := e.download(io.MultiWriter(h, e.stdout), sha)
	res, err := e.c.stream("GET", "/objects/"+url.PathEscape(sha), sink, uploadTimeout)
	done()
	if err == nil && res.status == 400 && errorMessage(res) == msgBadObjectName && isSHA256(sha) {
		fmt.Fprintf(e.stderr, "pvcontrol: object %s is not on the device (%s, HTTP 400)\n", sha, msgBadObjectName)
		return exitFailed
	}
	if _, code := e.answer(res, err); code != exitOK {
		return code
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		fmt.Fprintf(e.stderr, "pvcontrol: object %s: the %d bytes received hash to %s\n", sha, res.streamed, got)
		return exitBadChecksum
	}
	return exitOK
}

// msgBadObjectName is the device's answer to a GET of an object it does
// not hold (and of a name that is no sha256).
const msgBadObjectName = "Request has bad object name"

// isSHA256 reports whether s is a sha256 in lower-case hex, an object's
// name.
func isSHA256(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// putObjectStdin is "objects put -SIZE SHA256": exactly SIZE bytes of
// stdin, streamed; a stdin that ends sooner fails the upload.
func putObjectStdin(e *env, sizeText string, args []string) int {
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil {
		fmt.Fprintf(e.stderr, "pvcontrol: size %s: %v\n", sizeText, err)
		return exitUsage
	}
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "pvcontrol: objects put -%s reads stdin: give the object's SHA256\n", sizeText)
		return exitUsage
	}
	sha := args[0]
	res, err := e.upload("/objects/"+url.PathEscape(sha), "stdin", io.LimitReader(e.stdin, size), size)
	if _, code := e.answer(res, err); code != exitOK {
		return code
	}
	fmt.Fprintln(e.stdout, sha)
	return exitOK
}

// answer is call's handling of a response: the body on HTTP 200, else the
// failure reported on stderr and the exit code.
func (e *env) answer(res *response, err error) ([]byte, int) {
	if se := (*sourceError)(nil); errors.As(err, &se) {
		fmt.Fprintf(e.stderr, "pvcontrol: %v\n", se)
		return nil, exitFailed
	}
	if oe := (*outputError)(nil); errors.As(err, &oe) {
		fmt.Fprintf(e.stderr, "pvcontrol: %v\n", oe)
		return nil, exitFailed
	}
	if err != nil {
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

func listSteps(e *env, _ []string) int {
	return e.list("/steps", func(body []byte, w io.Writer) error {
		var steps []struct {
			Name      string `json:"name"`
			Date      string `json:"date"`
			CommitMsg string `json:"commitmsg"`
			Progress  struct {
				Status string `json:"status"`
				Msg    string `json:"status-msg"`
			} `json:"progress"`
		}
		if err := json.Unmarshal(body, &steps); err != nil {
			return err
		}
		tw := newTable(w)
		row(tw, "REV", "DATE", "STATUS", "MESSAGE", "COMMIT-MSG")
		for _, s := range steps {
			row(tw, s.Name, s.Date, s.Progress.Status, s.Progress.Msg, s.CommitMsg)
		}
		return tw.Flush()
	})
}

// stepPath is /steps/REV with each segment of REV escaped: locals/NAME
// keeps its slash.
func stepPath(rev string) string {
	segs := strings.Split(rev, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/steps/" + strings.Join(segs, "/")
}

// stepFile prints a revision's file as the server sends it: the state
// JSON (suffix "") or its progress ("/progress").
func stepFile(suffix string) func(*env, []string) int {
	return func(e *env, args []string) int {
		return printBody(stepPath(args[0])+suffix)(e, nil)
	}
}

// putStep installs a state JSON file as a local revision. Its objects
// must have been put first; the server names those missing.
func putStep(e *env, args []string) int {
	data, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "pvcontrol: %v\n", err)
		return exitFailed
	}
	if !strings.HasPrefix(args[1], "locals/") {
		fmt.Fprintf(e.stderr, "pvcontrol: revision %q: only local revisions (locals/NAME) can be installed\n", args[1])
		return exitUsage
	}
	return e.putRevision(args[1], data)
}

// putRevision installs a state JSON as rev, then sets its commit message
// when -m gave one.
func (e *env) putRevision(rev string, data []byte) int {
	res, err := e.c.do("PUT", stepPath(rev), "application/json", data)
	if _, code := e.answer(res, err); code != exitOK {
		return code
	}
	if e.msg == "" {
		return exitOK
	}
	res, err = e.c.do("PUT", stepPath(rev)+"/commitmsg", "text/plain", []byte(e.msg))
	_, code := e.answer(res, err)
	return code
}
