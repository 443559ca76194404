// Package ctrl is pv-ctrl, Pantavisor's control socket: HTTP/1.x on a unix
// socket, answering management containers, the containers that signal their
// readiness, and host tools such as pvcontrol.
//
// # Caller identity
//
// Who is calling is decided once per connection, right after accept: the
// peer's pid comes from SO_PEERCRED and a Resolver maps it to the container
// it runs in ("" for pantavisor itself and host tools). Resolving at accept
// time, not at the first request, keeps the window in which the pid could
// be reused by another process as short as possible. The container's roles
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
// A handler that panics is answered 500 {"Error":"Internal error"} (or its
// connection is aborted when the answer had started) and the server goes on.
//
// # Routes
//
// Endpoints are rows of one table (routes.go): method, path pattern with
// {} wildcard segments, permission, body limit, handler. A path matches a
// pattern with the same number of segments; when several match, the one
// with a literal segment further left wins (/steps/locals/{} beats
// /steps/{}/progress for /steps/locals/progress).
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
package ctrl
