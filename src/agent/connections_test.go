package agent

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connServer is policy-server-internal's API as far as connection use
// goes: plain endpoints that hold each request until a second one is in
// flight (up to 100 ms, so concurrent requests really overlap), and a
// long-poll of policies_last_updated that answers when the version moves.
// It counts the connections it accepts.
type connServer struct {
	srv      *httptest.Server
	accepted atomic.Int32
	inflight atomic.Int32
	parked   atomic.Int32 // long-polls waiting
	h1       atomic.Int32 // requests over HTTP/1.x

	mu      sync.Mutex
	version int64
	changed chan struct{} // closed when version moves
}

func newConnServer(t *testing.T, http2 bool) *connServer {
	s := &connServer{version: 1, changed: make(chan struct{})}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.EnableHTTP2 = http2
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.accepted.Add(1)
		}
	}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// tlsConfig trusts the server's certificate.
func (s *connServer) tlsConfig() *tls.Config {
	return s.srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
}

func (s *connServer) bump() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *connServer) current() (int64, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, s.changed
}

func (s *connServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		s.h1.Add(1)
	}
	w.Header().Set(longPollHeader, "1")
	switch r.URL.Path {
	case "/networking/v1/internal/policies_last_updated":
		v, changed := s.current()
		if wait := r.URL.Query().Get("wait"); wait != "" {
			since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
			secs, _ := strconv.ParseFloat(wait, 64)
			if since == v {
				s.parked.Add(1)
				select {
				case <-changed:
				case <-r.Context().Done():
				case <-time.After(time.Duration(secs * float64(time.Second))):
				}
				s.parked.Add(-1)
				v, _ = s.current()
			}
		}
		_, _ = w.Write([]byte(strconv.FormatInt(v, 10)))
		return
	}
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for deadline := time.Now().Add(100 * time.Millisecond); s.inflight.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	switch r.URL.Path {
	case "/networking/v1/internal/policies":
		_, _ = w.Write([]byte(`{"total_policies":0,"policies":[]}`))
	case "/networking/v1/internal/security_groups":
		_, _ = w.Write([]byte(`{"next":0,"security_groups":[]}`))
	case "/networking/v1/internal/tags":
		_, _ = w.Write([]byte(`{"id":"INGRESS_ROUTER","type":"router","tag":"0001"}`))
	default:
		http.NotFound(w, r)
	}
}

// TestClientKeepsAtMostTwoConnections runs the agent's traffic — the policy
// cycle, the ASG poll, tags and forced cycles all at once, while long-polls
// are parked — and counts the connections the server accepts: one for
// plain requests and one for long-polls, as upstream's agent keeps at most
// two. Against a server offering HTTP/2 (netman's), two long-polls (today's
// and a later one, e.g. for security groups) share their connection and
// every request is HTTP/2; against an HTTP/1.1-only server (upstream's)
// plain requests take turns on theirs. A change still ends the parked
// long-polls at once.
func TestClientKeepsAtMostTwoConnections(t *testing.T) {
	for _, tt := range []struct {
		name      string
		http2     bool
		longPolls int
	}{
		{"HTTP/2 server", true, 2},
		{"HTTP/1.1-only server", false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newConnServer(t, tt.http2)
			c := NewClient(s.srv.URL, s.tlsConfig(), 5*time.Second)
			t.Cleanup(c.CloseIdleConnections)
			ctx := t.Context()

			for round := range 2 {
				since, _ := s.current()
				results := make(chan int64, tt.longPolls)
				for range tt.longPolls {
					go func() {
						v, offered, err := c.WaitLastUpdated(ctx, since, 20*time.Second, time.Second)
						if err != nil || !offered {
							t.Errorf("long-poll: %v (offered %v)", err, offered)
						}
						results <- v
					}()
				}
				deadline := time.Now().Add(10 * time.Second)
				for s.parked.Load() != int32(tt.longPolls) {
					if time.Now().After(deadline) {
						t.Fatalf("round %d: %d of %d long-polls parked", round, s.parked.Load(), tt.longPolls)
					}
					time.Sleep(5 * time.Millisecond)
				}

				// Everything plain at once, twice, while the long-polls wait.
				for range 2 {
					var wg sync.WaitGroup
					for _, call := range []func() error{
						func() error { _, err := c.Policies(ctx, "app-a"); return err },
						func() error { _, err := c.Policies(ctx, "app-b"); return err },
						func() error { _, err := c.SecurityGroups(ctx, []string{"space-1"}); return err },
						func() error { _, err := c.CreateOrGetTag(ctx, "INGRESS_ROUTER", "router"); return err },
						func() error { _, _, err := c.LastUpdated(ctx); return err },
					} {
						wg.Go(func() {
							if err := call(); err != nil {
								t.Errorf("round %d: plain request: %v", round, err)
							}
						})
					}
					wg.Wait()
				}
				if n := s.parked.Load(); n != int32(tt.longPolls) {
					t.Fatalf("round %d: %d long-polls still parked after the plain requests, want %d", round, n, tt.longPolls)
				}

				s.bump()
				want, _ := s.current()
				for range tt.longPolls {
					select {
					case v := <-results:
						if v != want {
							t.Errorf("round %d: long-poll answered %d, want %d", round, v, want)
						}
					case <-time.After(10 * time.Second):
						t.Fatalf("round %d: long-poll not answered after the change", round)
					}
				}
			}

			if n := s.accepted.Load(); n != 2 {
				t.Errorf("server accepted %d connections, want 2 (one plain, one long-poll)", n)
			}
			if n := s.h1.Load(); tt.http2 && n != 0 {
				t.Errorf("%d requests over HTTP/1.1 to a server offering HTTP/2", n)
			}

			// A server that drops its connections (a restart) does not leave
			// the one-connection limit taken: both kinds reconnect. A request
			// already on its way over a dropped connection may fail, as it
			// would with any client; the agent's cycles retry.
			s.srv.CloseClientConnections()
			since, _ := s.current()
			for name, call := range map[string]func() error{
				"plain request": func() error { _, err := c.Policies(ctx); return err },
				"long-poll":     func() error { _, _, err := c.WaitLastUpdated(ctx, since-1, time.Second, time.Second); return err },
			} {
				var err error
				for range 3 {
					if err = call(); err == nil {
						break
					}
				}
				if err != nil {
					t.Fatalf("%s after the server dropped the connections: %v", name, err)
				}
			}
			if n := s.accepted.Load(); n != 4 {
				t.Errorf("server accepted %d connections in all, want 4", n)
			}
		})
	}
}

// freezingProxy forwards TCP connections until frozen: then the
// connections open at that moment stay open but carry nothing more either
// way, like a server host that vanished without closing them. Later
// connections are forwarded.
type freezingProxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	conns []*frozenFlag
}

type frozenFlag struct{ atomic.Bool }

func newFreezingProxy(t *testing.T, target string) *freezingProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{l: l, target: target}
	var wg sync.WaitGroup
	var open []net.Conn
	var openMu sync.Mutex
	t.Cleanup(func() {
		l.Close()
		openMu.Lock()
		for _, c := range open {
			c.Close()
		}
		openMu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			openMu.Lock()
			open = append(open, in, out)
			openMu.Unlock()
			f := new(frozenFlag)
			p.mu.Lock()
			p.conns = append(p.conns, f)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						dst.Close()
						return
					}
					if !f.Load() {
						if _, err := dst.Write(buf[:n]); err != nil {
							src.Close()
							return
						}
					}
				}
			}
			wg.Go(func() { pipe(out, in) })
			wg.Go(func() { pipe(in, out) })
		}
	})
	return p
}

func (p *freezingProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.conns {
		f.Store(true)
	}
}

// TestClientRecoversFromDeadHTTP2Connection: with one connection per kind,
// a connection that went silent must not hold every later request. Over
// HTTP/2 it outlives the requests that time out on it; the ping health
// check closes it, and the next request gets a new one.
func TestClientRecoversFromDeadHTTP2Connection(t *testing.T) {
	s := newConnServer(t, true)
	p := newFreezingProxy(t, s.srv.Listener.Addr().String())
	health := http.HTTP2Config{SendPingTimeout: 200 * time.Millisecond, PingTimeout: 200 * time.Millisecond}
	c := newClient("https://"+p.l.Addr().String(), s.tlsConfig(), 2*time.Second, health)
	t.Cleanup(c.CloseIdleConnections)
	ctx := t.Context()

	calls := []struct {
		name string
		call func() error
	}{
		{"plain request", func() error { _, err := c.Policies(ctx); return err }},
		{"long-poll", func() error {
			v, _ := s.current()
			_, _, err := c.WaitLastUpdated(ctx, v-1, time.Second, time.Second)
			return err
		}},
	}
	for _, k := range calls {
		if err := k.call(); err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
	}
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("server accepted %d connections, want 2", n)
	}
	p.freeze()
	for _, k := range calls {
		var err error
		for range 3 { // each attempt is bounded by 2 s
			if err = k.call(); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("%s still failing over a dead connection: %v", k.name, err)
		}
	}
	if n := s.accepted.Load(); n != 4 {
		t.Errorf("server accepted %d connections, want 4 (two replaced)", n)
	}
}
