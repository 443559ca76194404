// Command pvapp is the small static program the demo and the integration
// tests put in their containers, for what busybox cannot do: serve HTTP,
// tell pantavisor it is ready over the control socket, exit with a chosen
// code.
//
//	pvapp web [-addr :8080]     serve a page naming the container (and, in
//	                            X-Pvapp-Client, the address that connected)
//	pvapp ready [then CMD...]   POST /signal {"type":"ready"}, then run CMD or sleep
//	pvapp exit N                exit with status N
//	pvapp segv                  die by SIGSEGV, as a crashing program does
//	pvapp get URL               print the body of an HTTP GET (2 s timeout);
//	                            exit 1 when it fails
//	pvapp serve-unix PATH       answer each unix connection, after its end of
//	                            stream, with what came (bytes, fds' content)
//	pvapp dial-unix [-fd] PATH MSG
//	                            wait for PATH, send MSG (with a memfd), half-
//	                            close and print the answer
//	pvapp web-unix PATH         HTTP on a unix socket, answering with the
//	                            X-PV-Client/-Role headers it got
//	pvapp get-unix PATH N       N keep-alive GETs there, with a forged
//	                            X-PV-Client
//	pvapp dbus-serve ADDR NAME  own NAME on the bus, answer Ping with pong
//	pvapp dbus-call ADDR NAME   call NAME's Ping and print the answer
//	pvapp forward LISTEN TARGET relay TCP connections to TARGET
//	pvapp ctrl METHOD PATH [BODY]...
//	                            send each request to pv-ctrl in turn and print
//	                            "METHOD PATH STATUS BODY" a line each
//	pvapp escape-cgroups ctrl METHOD PATH [BODY]...
//	                            move to the root of every cgroup hierarchy
//	                            (a container keeping the host cgroup
//	                            namespace can), then do what ctrl does
//	pvapp orphan METHOD PATH    a child connects, sends the request and exits;
//	                            print "ORPHAN METHOD PATH STATUS BODY"
//	pvapp ctrl-hog              open connections to pv-ctrl without end, never
//	                            closing one
//	pvapp ctrl-hold N LEN PATH  keep N connections to pv-ctrl that sent a POST
//	                            PATH head with Content-Length LEN and no body
//	pvapp flood                 print to the console without end
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// ctrlSocket is where pantavisor exposes pv-ctrl inside every container.
const ctrlSocket = "/pantavisor/pv-ctrl"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pvapp web [-addr :8080] | ready [CMD...] | exit N")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "web":
		addr := ":8080"
		if len(os.Args) == 4 && os.Args[2] == "-addr" {
			addr = os.Args[3]
		}
		web(addr)
	case "ready":
		if err := signalReady(); err != nil {
			fmt.Fprintln(os.Stderr, "pvapp: signal ready:", err)
			os.Exit(1)
		}
		fmt.Println("pvapp: signalled ready")
		if len(os.Args) > 2 {
			cmd := exec.Command(os.Args[2], os.Args[3:]...)
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Run(); err != nil {
				os.Exit(1)
			}
			return
		}
		waitForTerm()
	case "segv":
		segv()
	case "get":
		if len(os.Args) != 3 {
			os.Exit(2)
		}
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "pvapp:", err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Print(string(body))
	case "ctrl":
		if len(os.Args) < 4 {
			os.Exit(2)
		}
		ctrlRequests(os.Args[2:])
		waitForTerm()
	case "serve-unix":
		if len(os.Args) != 3 {
			os.Exit(2)
		}
		serveUnix(os.Args[2])
	case "dial-unix":
		dialUnix(os.Args[2:])
	case "trickle-unix":
		if len(os.Args) != 3 {
			os.Exit(2)
		}
		trickleUnix(os.Args[2])
	case "hold-unix":
		if len(os.Args) != 3 {
			os.Exit(2)
		}
		holdUnix(os.Args[2])
	case "web-unix", "get-unix", "dbus-serve", "dbus-call", "forward":
		meshCommand(os.Args[1], os.Args[2:])
	case "escape-cgroups":
		cg, err := escapeCgroups()
		if err != nil {
			fmt.Println("pvapp: escape-cgroups failed:", err)
		} else {
			fmt.Println("pvapp: escaped cgroups:", cg)
		}
		if len(os.Args) > 5 && os.Args[2] == "ctrl" {
			ctrlRequests(os.Args[3:])
		}
		waitForTerm()
	case "orphan":
		if len(os.Args) != 4 {
			os.Exit(2)
		}
		orphanRequest(os.Args[2], os.Args[3])
		fmt.Println("pvapp: orphan done")
		waitForTerm()
	case "orphan-child":
		orphanChild(os.Args[2], os.Args[3])
	case "ctrl-hog":
		ctrlHog()
	case "ctrl-hold":
		ctrlHold(os.Args[2:])
	case "flood":
		flood()
	case "exit":
		n, err := strconv.Atoi(os.Args[2])
		if err != nil {
			os.Exit(2)
		}
		os.Exit(n)
	default:
		fmt.Fprintln(os.Stderr, "pvapp: unknown command", os.Args[1])
		os.Exit(2)
	}
}

// segv restores the default SIGSEGV disposition (the Go runtime would turn
// the fault into a panic and exit 2) and faults. A fault is delivered even
// to a pid namespace's init, which ignores every other signal it does not
// handle, so this is how a container's init really dies by a signal.
func segv() {
	var dfl [4]uint64 // a zeroed kernel sigaction: SIG_DFL, no flags, empty mask
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGSEGV),
		uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0); e != 0 {
		fmt.Fprintln(os.Stderr, "pvapp: rt_sigaction:", e)
		os.Exit(1)
	}
	var p *int
	*p = 1
}

func web(addr string) {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			w.Header().Set("X-Pvapp", "missing")
			http.Error(w, "no such page on "+host, http.StatusNotFound)
			return
		}
		// Who connected: an ingress test tells a kernel path (the
		// outside client itself) from the relay (the device).
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			w.Header().Set("X-Pvapp-Client", ip)
		}
		fmt.Fprintf(w, "hello from %s, a pantavisor container (path %s)\n", host, r.URL.Path)
	})
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		waitForTerm()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	fmt.Printf("pvapp: serving on %s\n", addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "pvapp:", err)
		os.Exit(1)
	}
}

// ctrlClient talks HTTP to pv-ctrl.
func ctrlClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", ctrlSocket)
		},
	}}
}

// ctrlRequests sends the requests given as METHOD PATH [BODY] triples
// (BODY "-" for none) and prints each answer's status and body on a line:
// what the control socket lets this container do.
func ctrlRequests(args []string) {
	c := ctrlClient()
	for len(args) >= 3 {
		method, path, body := args[0], args[1], args[2]
		args = args[3:]
		var r io.Reader
		if body != "-" {
			r = bytes.NewBufferString(body)
		}
		req, err := http.NewRequest(method, "http://localhost"+path, r)
		if err != nil {
			fmt.Println(method, path, "error", err)
			continue
		}
		resp, err := c.Do(req)
		if err != nil {
			fmt.Println(method, path, "error", err)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		resp.Body.Close()
		fmt.Println(method, path, resp.StatusCode, string(bytes.ReplaceAll(b, []byte("\n"), []byte(" "))))
	}
	fmt.Println("pvapp: ctrl done")
}

func signalReady() error {
	c := ctrlClient()
	resp, err := c.Post("http://localhost/signal", "application/json", bytes.NewBufferString(`{"type":"ready","payload":""}`))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}

// waitForTerm blocks until SIGTERM or SIGINT: as a container's init the
// program must handle them itself, the kernel ignores them otherwise.
func waitForTerm() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}
