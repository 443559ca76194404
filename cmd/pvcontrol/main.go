// Command pvcontrol drives Pantavisor through its control socket, pv-ctrl:
// it speaks HTTP over the unix socket and nothing else.
//
//	pvcontrol [-s SOCK] [-v] [--json] [-m MSG] [-f FILE] COMMAND [ARGS]
//
// Options may come anywhere on the line ("--" ends them). With -f the
// output goes to FILE, written whole (through a temporary file renamed on
// success) or not at all. The socket
// defaults to the first that exists of /run/pantavisor/pv/pv-ctrl,
// /pv/pv-ctrl and /pantavisor/pv-ctrl (the last one when none does), as
// upstream's pvcontrol.
//
// Exit codes follow upstream's pvcontrol for HTTP outcomes: 0 when the
// server answered 200; 48, 60 or 70 when its error says "Not enough disk
// space available", "Object has bad checksum" or "State verification has
// failed"; 75 for any other 503 (an update or a command is under way: try
// again); 255 for any other answer and when the socket cannot be reached.
// A bad command line exits 2, which upstream (a shell script) never uses,
// so scripts can tell a typo from a refusal.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK          = 0
	exitUsage       = 2
	exitNoSpace     = 48
	exitBadChecksum = 60
	exitBadState    = 70
	exitBusy        = 75
	exitFailed      = 255
)

// defaultSockets are tried in order when -s is not given.
var defaultSockets = []string{"/run/pantavisor/pv/pv-ctrl", "/pv/pv-ctrl", "/pantavisor/pv-ctrl"}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options is the parsed command line.
type options struct {
	sock    string
	verbose bool
	json    bool
	help    bool
	// commitMsg is -m: the commit message of a revision put or installed.
	commitMsg string
	// output is -f: the file the command's output goes to.
	output string
	// words are the positional arguments: the command and its arguments.
	words []string
}

// parseArgs reads options wherever they appear, so "pvcontrol ls --json"
// and "pvcontrol --json ls" are the same. A word that looks like a negative
// number is an argument, not an option (upstream's "objects put -SIZE").
func parseArgs(args []string) (options, error) {
	var o options
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			o.words = append(o.words, args[i+1:]...)
			return o, nil
		case a == "-s" || a == "--socket":
			if i+1 >= len(args) {
				return o, fmt.Errorf("option %s needs a socket path", a)
			}
			i++
			o.sock = args[i]
		case strings.HasPrefix(a, "-s="), strings.HasPrefix(a, "--socket="):
			_, o.sock, _ = strings.Cut(a, "=")
		case a == "-m" || a == "--message":
			if i+1 >= len(args) {
				return o, fmt.Errorf("option %s needs a commit message", a)
			}
			i++
			o.commitMsg = args[i]
		case a == "-f" || a == "--output":
			if i+1 >= len(args) {
				return o, fmt.Errorf("option %s needs a file", a)
			}
			i++
			o.output = args[i]
		case strings.HasPrefix(a, "-f="), strings.HasPrefix(a, "--output="):
			_, o.output, _ = strings.Cut(a, "=")
		case a == "-v" || a == "--verbose":
			o.verbose = true
		case a == "--json" || a == "-json":
			o.json = true
		case a == "-h" || a == "--help":
			o.help = true
		case len(a) > 1 && a[0] == '-' && !isNumber(a[1:]):
			return o, fmt.Errorf("unknown option %s", a)
		default:
			o.words = append(o.words, a)
		}
	}
	return o, nil
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// pickSocket returns the first existing candidate, else the last one.
func pickSocket(candidates []string) string {
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return candidates[len(candidates)-1]
}

// run executes one command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "pvcontrol: %v\n\n", err)
		writeUsage(stderr)
		return exitUsage
	}
	if o.help || (len(o.words) > 0 && o.words[0] == "help") {
		writeUsage(stdout)
		return exitOK
	}
	if len(o.words) == 0 {
		writeUsage(stderr)
		return exitUsage
	}
	cmd, args, err := findCommand(o.words)
	if err != nil {
		fmt.Fprintf(stderr, "pvcontrol: %v\n\n", err)
		writeUsage(stderr)
		return exitUsage
	}
	if len(args) < cmd.min || len(args) > cmd.max {
		fmt.Fprintf(stderr, "pvcontrol: wrong number of arguments\nusage: pvcontrol %s\n", cmd.synopsis())
		return exitUsage
	}
	if o.sock == "" {
		o.sock = pickSocket(defaultSockets)
	}
	e := &env{
		c:      newClient(o.sock, o.verbose, stderr),
		stdin:  os.Stdin,
		stdout: stdout,
		stderr: stderr,
		json:   o.json,
		msg:    o.commitMsg,
		// Progress on a terminal only: never in what a script reads.
		progress: progressWriter(stderr, o.json),
	}
	if o.output == "" {
		return cmd.run(e, args)
	}
	return runToFile(e, cmd, args, o.output)
}

// runToFile runs cmd with its output going to file, which is replaced
// only when cmd succeeded. An interrupt (^C, SIGTERM, SIGHUP) removes the
// temporary file before exiting.
func runToFile(e *env, cmd command, args []string, file string) int {
	out, err := createOutput(file)
	if err != nil {
		fmt.Fprintf(e.stderr, "pvcontrol: %v\n", err)
		return exitFailed
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		if sig, ok := <-sigs; ok {
			out.Discard()
			os.Exit(128 + int(sig.(syscall.Signal)))
		}
	}()
	defer func() {
		signal.Stop(sigs)
		close(sigs)
	}()
	e.stdout = out.File
	code := cmd.run(e, args)
	if code != exitOK {
		out.Discard()
		return code
	}
	if err := out.Commit(); err != nil {
		fmt.Fprintf(e.stderr, "pvcontrol: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// writeUsage prints the options and every command of the table.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, `usage: pvcontrol [-s SOCK] [-v] [--json] [-m MSG] [-f FILE] COMMAND [ARGS]

options (anywhere on the line; -- ends them):
  -s SOCK   control socket (default: first existing of `+strings.Join(defaultSockets, ", ")+`)
  -v        print each request and its status on stderr
  --json    print listings as the server's JSON instead of a table
  -m MSG    commit message of the revision steps put or steps install writes
  -f FILE   write the output to FILE, whole and only on success, not to stdout
  -h        this help

commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-36s %s\n", c.synopsis(), c.help)
	}
	fmt.Fprint(w, `
exit: 0 on HTTP 200; 48 "Not enough disk space available", 60 "Object has
bad checksum", 70 "State verification has failed"; 75 HTTP 503 (busy);
255 any other answer or no connection; 2 bad command line
`)
}
