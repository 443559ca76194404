// Package ctrl is pv-ctrl, Pantavisor's control socket: HTTP/1.x on a unix
// socket, answering management containers, the containers that signal their
// readiness, and host tools such as pvcontrol.
//
// # Caller identity
//
// Who is calling is decided once per connection, right after accept: the
// peer's pid comes from SO_PEERCRED, a pidfd from SO_PEERPIDFD pins the
// process, and a Resolver maps the pid to the container it runs in (""
// for pantavisor itself and host tools); the pidfd is checked alive after
// the Resolver's /proc reads, so a pid reused meanwhile is not trusted.
// pantavisor's Resolver (IdentityResolver) compares the peer's pid and
// mount namespaces with each running container's init and with its own:
// a process in a container's namespaces is that container whatever its
// cgroup says (a container keeping the host cgroup namespace can leave
// its cgroup), one in pantavisor's own is the host unless its cgroup names
// a container, and any other case is unknown. The container's roles
// come from Backend.Containers(), looked up on the connection's first
// request that needs them and cached on the connection for rolesTTL, so a
// keep-alive client costs one Containers() call per second at most.
//
// Permissions: the host is privileged; a container is privileged iff it has
// role "mgmt"; a caller that cannot be identified (resolver error, or a
// container name the backend does not know) is denied everything with
// upstream's 500 "Internal error, unknown caller".
//
// # Request checks, in order
//
//  1. Host header: empty, absent or "localhost" (any case); anything else is
//     answered 400 {"Error":"Host not allowed"} and the connection is
//     closed. Upstream drops such requests silently; an answer tells a
//     misconfigured client what is wrong, and the close gives a
//     DNS-rebinding proxy nothing to keep alive. net/http itself refuses an
//     HTTP/1.1 request without any Host header (RFC 9112 requires one);
//     HTTP/1.0 without Host is accepted.
//  2. Path: no route with that shape → 400 {"Error":"unknown endpoint: <uri>"}.
//  3. Method: the path exists for other methods only → 400 "Method not
//     supported for this endpoint".
//  4. Caller: unknown → 500 "Internal error, unknown caller".
//  5. Permission: a mgmt route called by a non-mgmt container → 403
//     "Request not sent from mgmt platform".
//  6. Body size: beyond the route's limit → 413 "Request body too large"
//     (the connection is closed).
//
// Every error body is {"Error":"<msg>"} with Content-Type application/json.
// The route's limit is checked against Content-Length before any byte of
// the body is read; a chunked body is cut at the limit while it is read
// (http.MaxBytesReader), so a 100 MB body to a 4096-byte endpoint costs the
// server 4096 bytes and the socket buffers.
//
// # Limits
//
// A slow or malicious client must not stall the socket for others. Every
// connection has its own goroutine, so a slow one delays nobody; what is
// bounded is how many there are and how long each may take:
//
//   - Connections: at most DefaultMaxConns (256; SetMaxConns) open at once,
//     counted across listeners. One more is refused at accept, before the
//     caller resolver runs: once its request head came (or 1 s passed) it
//     is answered 503 {"Error":"Too many connections"} with Retry-After: 1
//     and Connection: close, then closed; a log line counts refusals (at
//     most one per 10 s). At most 128 refusals of containers (1024 of
//     the host) wait for their heads at once; beyond them a connection is
//     refused at once with what it sent so far, so a container opening
//     connections without end costs the server a bounded number of
//     descriptors. Connections from outside pantavisor's pid namespace
//     (containers) have caps of their own, checked at accept from the
//     peer's pid namespace: a quarter of the cap (64) for each namespace,
//     the cap less an eighth (224) for all of them, so a container
//     opening connections without end cannot lock the host, or a
//     management container, out of the socket. 256 leaves room
//     for upstream's clients and a few hundred stuck ones (each costs ~20
//     KiB) on a small device.
//   - Request header: within 10 s of its first byte (ReadHeaderTimeout);
//     at most 64 KiB.
//   - Request body: within 30 s of the end of the header; a route accepting
//     more than 1 MiB (object uploads) instead must make progress every
//     30 s, since an upload may take hours. Once the body ends the read
//     deadline is lifted: a command that runs long after reading its body
//     is not cut off. A body the handler did not read (an answer given
//     first) or that failed has the same 30 s: net/http reads the rest
//     after the answer, and a client that never sends the body it
//     announced is then cut instead of holding its connection for ever.
//   - Answer: each write within 30 s (the deadline is pushed ahead before
//     every write, a streamed file 1 MiB at a time), so a client that
//     stops reading is dropped but a long download is not.
//   - Idle keep-alive connections: closed after 2 min.
//
// HTTP/1.0 and HTTP/1.1 are served (no HTTP/2 on the socket).
// A handler that panics is answered 500 {"Error":"Internal error"} (or its
// connection is aborted when the answer had started) and the server goes on.
//
// With a healthy backend and storage the server answers no 5xx but these:
// 500 "Signal not expected from this platform" (upstream's, for the host
// or a refused signal); 501 for ENABLE_SSH and DISABLE_SSH; 503 "A command
// is already in progress. Try again", 503 "Too many connections" (see
// Limits) and 503 update.MsgUpdateOngoing; 507 "Not enough disk space
// available"; net/http's own plain-text 501 (a transfer encoding other
// than chunked) and 505 (an HTTP version other than 1.x). FuzzServer
// checks this for arbitrary methods, paths and bodies.
//
// # Routes
//
// Endpoints are rows of one table (routes.go): method, path pattern with
// {} wildcard segments, permission, body limit, handler. A path matches a
// pattern with the same number of segments; when several match, the one
// with a literal segment further left wins (/steps/locals/{} beats
// /steps/{}/progress for /steps/locals/progress).
//
// # Metrics
//
// GET /metrics (mgmt) answers Prometheus' text format from a registry of
// the server's own (never the process-wide default one). The Backend is
// read at scrape time:
//
//   - pv_container_status{container,group,status} 1 for the current status;
//   - pv_container_recovery_retries{container}: auto_recovery's retries in
//     its current window (a gauge: the window resets it);
//   - pv_actor_supervised_restarts_total{actor,kind}: Node.Restarts (a
//     container actor's process restarts); pv_actor_restarts_total
//     {actor,kind}: Node.ActorRestarts (actor panics);
//   - pv_revision_boot_seconds: the root node's Info["booted_in"], absent
//     until the revision has booted;
//   - pv_update_in_progress (0/1) and pv_revision_info{running,committed,
//     tried} 1, from Backend.Revisions.
//
// pv_ctrl_requests_total{route,code} counts every answered request by
// route pattern ("GET /containers/{}"; "unmatched" for no route, never
// the raw path, so the series are bounded) and status code ("aborted"
// when the connection was cut before an answer). A source that fails
// (or panics) is logged and left out; the other metrics are served.
//
// # Update endpoints
//
// /objects and /steps read and write the device storage (SetStorage)
// through the storage package, not through the Backend: an object upload
// is streamed from the socket into objects/ (hashed on the way, published
// only when it matches its name), where a message to the actor tree would
// carry it whole. Its body limit is Storage.MaxObject instead of a fixed
// one. PUT /steps/locals/{name} validates the state JSON (state.Parse) and
// checks every object it names is stored before writing anything, so a
// refused revision leaves nothing on disk; it never replaces an existing
// revision (409). Running a revision (POST /commands) is the actor tree's.
// Uploads hold the storage shared; RUN_GC needs it alone and is refused
// (503 "Storage is busy", Retry-After) while an upload is being written.
//
// No object upload eats into the reserve, PV_STORAGE_GC_RESERVED % of the
// storage's size (statfs: f_bavail free, f_blocks total; read at each
// upload, so a change at run time applies to the next): the device keeps
// room for its logs, progress and metadata. An upload with a
// Content-Length claims that many bytes while it is in flight; the room
// it sees is the free space less the reserve less what the other uploads
// in flight have still to write of their claims. One that does not fit
// is preceded by an automatic GC, and refused if it still does not fit:
// 507 "Not enough disk space available" before its body is read
// (Connection: close), upstream's "Space required N B, available M B"
// logged with the object's name, nothing written. One larger than the
// storage less the reserve could ever hold (any, with a reserve of
// 100 %) is refused so at once, without a GC. One whose GC cannot run
// now, a command or another write holding the storage, is answered 503
// with a Retry-After (pvcontrol exits 75: try again) and nothing is
// removed. A body is also checked as it is written, every 4 MiB or
// sooner when less is left: one without a Content-Length (which gets no
// GC), or one that other writers left no room for, is stopped before it
// would reach the reserve, removed, and answered 507. A full disk met
// anyway (ENOSPC, EDQUOT) is the same 507; a read-only one 507 "Storage
// is read-only".
//
// The automatic GC (before an upload, and WatchStorage's when the free
// space is below PV_STORAGE_GC_THRESHOLD %, checked every
// StorageCheckInterval, 0 = off) depends on no clock for what it keeps.
// It removes only:
//   - revisions that RUN_GC would remove (not running, committed, tried,
//     backing, "0" or trails/current) and whose progress is final (DONE,
//     UPDATED, ERROR, WONTGO). A step put and not run (NEW), or a
//     revision with any other, no or an unreadable progress, is removed
//     by RUN_GC alone;
//   - the objects those revisions alone referred to, but for those put
//     since the last step (a local update may share an object with an
//     old revision: its put found it stored; the record of those is
//     kept in Storage.PutRecord, on the run tmpfs, for a supervisor
//     started again before the step). An object nothing
//     referred to before (a local update's, uploaded before its step; a
//     leftover) is never removed by the GC before an upload. The
//     threshold GC removes those only once no upload (object or step)
//     came for max(PV_STORAGE_GC_THRESHOLD_DEFERTIME, 60 s), on the
//     monotonic clock, the server's start counting as an upload.
//
// The threshold GC waits until no upload came within
// PV_STORAGE_GC_THRESHOLD_DEFERTIME (600 s), and runs again only when the
// revisions stored (or which of them are finished) or in use, the
// uploads, or whether objects nothing refers to may go, changed. Neither GC waits for the storage: with a
// command or another write in flight it does not run (space.go); a
// command that comes while one runs is answered 503 "A command is
// already in progress" with Retry-After, as during any command. Each logs
// what it freed. WatchStorage returns, when stopped, once its GC in
// flight is over.
//
// Upstream's pvcontrol uploads objects with "Transfer-Encoding: identity"
// beside Content-Length, which net/http answers 501 before any handler;
// the server's connections drop that one header line from request heads
// (identity_te.go). ctrl/upstream_tools_test.go runs upstream's unchanged
// script (testdata/upstream-tools) against the server.
//
// # Metadata and information
//
// GET /user-meta and /device-meta list {key: value}; PUT .../{key} (raw
// value, 1 to 4096 bytes) and DELETE .../{key} (404 "User meta does not
// exist" / "Device meta does not exist") change one key (SetMeta). A key is
// one file name: empty, over 255 bytes, a slash or backslash, a leading
// dot or a control character is 400 "Bad meta key ...". Each key is a file
// in <run>/user-meta or <run>/device-meta (what containers read) and in
// <storage>/cache/meta or cache/devmeta (written first, fsynced), which
// SetMeta loads and republishes at the next start. A user-meta key that is
// a configuration key overrides it at config.LevelMeta (SetConfig), at
// once and at every start; a delete does not undo it until the next start.
// Upstream's per-platform copies (user-meta.<plat>/) are not written.
//
// GET /config (config.Config.Legacy) and /config2 (All) serve the
// configuration; GET /buildinfo the binary's Go build information as
// text/plain. GET /xconnect-graph is the running revision's links in
// upstream's shape (GraphBackend). There are no drivers or daemons: GET
// /drivers and /daemons answer [], PUT /drivers/load|unload 200,
// PUT /drivers/{alias}/load|unload 400 "Error loading driver", and a
// well-formed PUT /daemons/{name} 404 "Daemon not found".
//
// # Commands
//
// POST /commands {"op":OP,"payload":"..."} (mgmt, ≤4096 bytes) carries out
// one command before it answers (upstream queues it and answers at once),
// one at a time: a command meanwhile is 503 "A command is already in
// progress. Try again" with Retry-After: 120. OP must be a whole name;
// upstream also takes any prefix of one (strncmp on the op's length), which
// is not mimicked: "" or "LOCAL" would pick an arbitrary command.
//
//   - LOCAL_RUN, LOCAL_RUN_COMMIT (payload: revision): Backend.RunRevision.
//   - REBOOT_DEVICE, POWEROFF_DEVICE (payload: reason): Backend.Power.
//   - RUN_GC: storage.Layout.GC keeping Backend.Revisions() and "0"
//     (and nothing more: objects uploaded for a step not yet put go).
//   - MAKE_FACTORY (payload: revision, "" for the running one): its state
//     JSON replaces trail 0 whole (storage.ReplaceTrail), then "0" is run
//     as LOCAL_RUN_COMMIT; refused while an update is under test.
//   - UPDATE_METADATA, GO_REMOTE, DEFER_REBOOT: 409 naming the op (there
//     is no remote mode and no debug shell: upstream's answers when they
//     are off); ENABLE_SSH, DISABLE_SSH: 501 (no ssh server).
//   - TRY_ONCE, LOCAL_APPLY, XCONNECT_GRAPH: 200 and a log line, ignored
//     as upstream ignores them.
//
// Bad JSON is 400 "Command has bad format", an unknown op 400 "No command
// found: <op>". Refusals: update.ErrUpdateOngoing → 503
// update.MsgUpdateOngoing with Retry-After: 600 (upstream's); a revision
// never uploaded (update.ErrUnknownRevision, storage.ErrNoTrail) → 404
// "Resource does not exist"; a bad name or a state that does not validate
// (update.ErrInvalidRevision, ...) → 422 with the error text; a full
// storage → 507; messages.ErrNoUpdates → 500 naming it; anything else →
// 500 "Internal error" and a log line.
package ctrl
