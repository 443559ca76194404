package xconnect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pantavisor/pv/internal/throttle"
)

// Conns is the accept loop and connection bookkeeping of the proxies
// (unix, tcp, http): each accepted connection is handled in its own
// goroutine, which recovers from a panic; past a cap, its own or the
// process-wide one (budget.go), one more is closed on arrival; Close
// stops accepting, closes every connection tracked (the accepted ones,
// and the provider ones a handler tracks) and waits for every handler.
type Conns struct {
	log   *slog.Logger
	ctx   context.Context
	stop  context.CancelFunc
	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool // true: accepted, false: tracked by a handler
	wg    sync.WaitGroup
	// gate admits the accepted connections; refused is told of each
	// connection closed beyond it, and refusals keeps their log to a
	// line per refuseLogEvery.
	gate     Gate
	refused  func()
	refusals *throttle.Throttle
}

// DefaultMaxConns is how many accepted connections one proxy carries at
// once unless SetMax says otherwise. Each costs pantavisor descriptors
// (two, the provider's included) and goroutines: a consumer or a client
// that opens connections without end, and holds them, must not take
// every descriptor of the supervisor (no container start, no control
// socket while it holds them).
const DefaultMaxConns = 1024

// refuseLogEvery rate-limits the log of connections refused at the cap,
// and of accepts that fail.
const refuseLogEvery = 10 * time.Second

// NewConns makes the bookkeeping of one proxy.
func NewConns(log *slog.Logger) *Conns {
	if log == nil {
		log = slog.Default()
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Conns{log: log, ctx: ctx, stop: stop, conns: map[net.Conn]bool{},
		refusals: throttle.Every(refuseLogEvery)}
}

// SetMax caps the accepted connections carried at once at n
// (DefaultMaxConns when n <= 0); refused, when not nil, is called for
// each connection closed on arrival beyond the cap (a plugin counts it
// as an error). It must be called before Serve.
func (s *Conns) SetMax(n int, refused func()) {
	if n <= 0 {
		n = DefaultMaxConns
	}
	s.mu.Lock()
	s.gate.SetMax(n)
	s.refused = refused
	s.mu.Unlock()
}

// Context ends when Close is called: handlers dial with it.
func (s *Conns) Context() context.Context { return s.ctx }

// Serve accepts on ln until Close, handing each connection to handle in
// a goroutine; the connection is closed and forgotten when handle
// returns. A listener that fails for another reason than Close is
// retried after a pause (EMFILE and the like), never spun on, and logged
// at most once per refuseLogEvery.
func (s *Conns) Serve(ln net.Listener, handle func(c net.Conn)) error {
	s.mu.Lock()
	closed := s.ctx.Err() != nil
	s.ln = ln
	s.mu.Unlock()
	if closed {
		// Closed before serving: Close could not end this listener.
		ln.Close()
		return nil
	}
	failures := throttle.Every(refuseLogEvery)
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if n, ok := failures.Event(); ok {
				// A failure lasts (every descriptor taken): a
				// line per try, ten a second per link, would
				// flood the log with it.
				s.log.Warn("accept failed; trying again", "err", err, "failures", n)
			}
			select {
			case <-s.ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		switch s.admit(c) {
		case admitted:
			go s.run(c, handle)
		case full:
			// Counted before the close: the peer that reads its
			// end finds the refusal counted.
			s.refuse()
			c.Close()
		default: // closed
			c.Close()
			return nil
		}
	}
}

// admission is what admit made of a connection.
type admission int

const (
	admitted admission = iota
	full               // beyond the cap: refused
	closed             // Close came first
)

// admit tracks an accepted connection and counts its goroutine, both
// under mu: Close, which holds mu while it cancels and then waits, either
// sees the goroutine counted or keeps it from starting (a wg.Add racing
// Close's Wait would let Close return with a handler still running).
func (s *Conns) admit(c net.Conn) admission {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return closed
	}
	if !s.gate.Take() {
		return full
	}
	s.conns[c] = true
	s.wg.Add(1)
	return admitted
}

// refuse tells of a connection refused at the cap, and logs the
// refusals at most once per refuseLogEvery: a peer that keeps opening
// connections must not flood the log.
func (s *Conns) refuse() {
	s.mu.Lock()
	refused, max := s.refused, s.gate.Max()
	s.mu.Unlock()
	if refused != nil {
		refused()
	}
	if n, ok := s.refusals.Event(); ok {
		s.log.Warn("connections refused: too many at once", "refused", n, "max", max)
	}
}

func (s *Conns) run(c net.Conn, handle func(net.Conn)) {
	defer s.wg.Done()
	defer s.Untrack(c)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("link connection panicked", "panic", fmt.Sprint(r))
		}
		c.Close()
	}()
	handle(c)
}

// Track adds a connection (a provider's) for Close to end; false once
// closed, and the caller closes it then.
func (s *Conns) Track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.conns[c] = false
	return true
}

// Untrack forgets a connection.
func (s *Conns) Untrack(c net.Conn) {
	s.mu.Lock()
	if acc, ok := s.conns[c]; ok {
		if acc {
			s.gate.Give()
		}
		delete(s.conns, c)
	}
	s.mu.Unlock()
}

// Close stops accepting, ends every connection and waits for the handlers.
//
// The connections are closed outside mu: a tracked connection's Close may
// untrack it (the http proxy's backend connections do), which needs mu.
// The tracked ones (a handler's connections to its provider) are closed
// before the accepted ones: the close of a connection that a handler
// reads in a RawConn.Read callback waits for that callback to return, and
// the http proxy's callback on a client connection may wait on its
// backend connection; no handler waits on an accepted connection inside
// a callback on a tracked one. (Passing every deadline first would end
// such waits in any order, but as timeouts, which the relays count as
// errors; a goroutine per close would cost a stack per connection at the
// moment a listener with thousands goes.)
func (s *Conns) Close() error {
	s.mu.Lock()
	s.stop()
	var err error
	if s.ln != nil {
		if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
	}
	var tracked, accepted []net.Conn
	for c, acc := range s.conns {
		if acc {
			accepted = append(accepted, c)
		} else {
			tracked = append(tracked, c)
		}
	}
	s.mu.Unlock()
	for _, c := range tracked {
		c.Close()
	}
	for _, c := range accepted {
		c.Close()
	}
	s.wg.Wait()
	return err
}
