// Package app is the apps the lab runs in its containers, in place of a
// Cloud Foundry app: each serves HTTP, and a caller also calls a URL every
// few milliseconds on a fresh connection and logs when the outcome changes
// (allowed or denied), so that a policy change can be timed from the log.
// ReadCalls and WaitCall read that log. The lab runs them as `netman-lab
// app`.
package app

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netman-release/netman/src/standin/boshdns"
)

// Port is where an app listens unless told otherwise.
const Port = 8080

// Run is `netman-lab app`: the process inside an app container. It
// serves HTTP on --listen, answering "hello from <name>", and with --call
// it also calls that URL every --every, on a new connection each time (a
// policy applies to new connections), and writes a call line to out when
// the outcome changes and at least once a second otherwise, stamped with
// the time the call started:
//
//	<RFC 3339 time> allowed|denied <detail>
//
// With --dns, a host name in --call is resolved for every call by asking
// that server for A records (what the container's resolv.conf names);
// a failed lookup is a "denied lookup <name> ..." line.
func Run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("netman-lab app", flag.ContinueOnError)
	name := fs.String("name", "app", "the app's name")
	listen := fs.String("listen", fmt.Sprintf(":%d", Port), "HTTP listen address")
	call := fs.String("call", "", "URL to call")
	every := fs.Duration("every", 20*time.Millisecond, "how often to call")
	dns := fs.String("dns", "", "DNS server (ip or ip:port) resolving --call's host; default: the system's resolver")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	c := &caller{url: *call, dns: *dns, next: 1, done: map[uint64]result{}}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		fmt.Fprintf(w, "hello from %s (%v)\n", *name, local)
		if c.url != "" {
			fmt.Fprintf(w, "calling %s: %s\n", c.url, c.status())
		}
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	fmt.Fprintf(out, "%s %s listening on %s\n", time.Now().Format(time.RFC3339Nano), *name, *listen)
	if c.url == "" {
		<-ctx.Done()
		return nil
	}
	fmt.Fprintf(out, "%s %s calling %s every %v\n", time.Now().Format(time.RFC3339Nano), *name, c.url, *every)
	c.run(ctx, *every, out)
	return nil
}

type caller struct {
	url string
	dns string // the resolver for url's host; "" the system's

	mu      sync.Mutex
	last    string            // "allowed ..." or "denied ..."
	next    uint64            // the call to apply next: results apply in start order
	done    map[uint64]result // finished calls waiting for an earlier one
	printed time.Time
}

type result struct {
	start   time.Time
	outcome string
}

func (c *caller) status() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// maxInFlight bounds the calls waiting at once: a denied SYN that the
// kernel's ICMP rate limit leaves unanswered waits for the client timeout.
const maxInFlight = 200

// run starts a call every tick without waiting for the previous one, so
// that a call hanging on a dropped SYN does not blur the timing of a
// policy change.
func (c *caller) run(ctx context.Context, every time.Duration, out io.Writer) {
	client := newCallClient(c.dns)
	slots := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for seq := uint64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			start := time.Now()
			if outcome := callOnce(ctx, client, c.url, c.dns); ctx.Err() == nil {
				c.record(seq, start, outcome, out)
			}
		}()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// record applies finished calls in the order they started (a call that
// waits out its timeout holds back the ones after it), and writes a line,
// stamped with the call's start, when allowed turns to denied or back (or
// a failed lookup to a resolved denial, or back), or a second passed.
func (c *caller) record(seq uint64, start time.Time, outcome string, out io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done[seq] = result{start, outcome}
	for {
		r, ok := c.done[c.next]
		if !ok {
			return
		}
		delete(c.done, c.next)
		c.next++
		if kindOf(r.outcome) != kindOf(c.last) || r.start.Sub(c.printed) >= time.Second {
			fmt.Fprintf(out, "%s %s\n", r.start.Format(time.RFC3339Nano), r.outcome)
			c.printed = r.start
		}
		c.last = r.outcome
	}
}

// kindOf is "allowed", "denied" or "denied lookup" (or "" before the
// first call).
func kindOf(outcome string) string {
	v, rest, _ := strings.Cut(outcome, " ")
	if v == "denied" && strings.HasPrefix(rest, "lookup ") {
		return "denied lookup"
	}
	return v
}

// dialedKey carries an *atomic.Pointer[string] in a call's context, where
// the dialer notes the address it dialed (the transport may still be
// dialing when the call times out).
type dialedKey struct{}

// lookupError is a failed lookup of the called host.
type lookupError struct {
	host, server string
	err          error
}

func (e *lookupError) Error() string {
	return fmt.Sprintf("lookup %s via %s: %v", e.host, e.server, e.err)
}

// newCallClient makes a fresh connection for every call, resolving a host
// name through dns (when set) each time.
func newCallClient(dns string) *http.Client {
	d := &net.Dialer{}
	return &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if dns != "" && net.ParseIP(host) == nil {
				ips, err := boshdns.Resolver{Server: dns}.LookupA(ctx, host)
				if err != nil {
					return nil, &lookupError{host: host, server: dns, err: err}
				}
				addr = net.JoinHostPort(ips[0].String(), port) // shuffled by the adapter
			}
			if p, ok := ctx.Value(dialedKey{}).(*atomic.Pointer[string]); ok {
				p.Store(&addr)
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func callOnce(ctx context.Context, client *http.Client, rawURL, dns string) string {
	var dialed atomic.Pointer[string]
	req, err := http.NewRequestWithContext(context.WithValue(ctx, dialedKey{}, &dialed), http.MethodGet, rawURL, nil)
	if err != nil {
		return "denied " + err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		var lerr *lookupError
		if errors.As(err, &lerr) {
			return "denied " + lerr.Error()
		}
		if nerr, ok := err.(net.Error); ok && nerr.Timeout() {
			if addr := dialed.Load(); addr != nil {
				return fmt.Sprintf("denied timeout: no answer from %s within %v", *addr, client.Timeout)
			}
			if host := req.URL.Hostname(); dns != "" && net.ParseIP(host) == nil {
				return fmt.Sprintf("denied lookup %s via %s: no answer within %v", host, dns, client.Timeout)
			}
			return fmt.Sprintf("denied timeout: no answer within %v", client.Timeout)
		}
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) && uerr.Unwrap() != nil {
			err = uerr.Unwrap() // drop `Get "<url>": `
		}
		return "denied " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	return fmt.Sprintf("allowed %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// Call is one call line of a caller app's log.
type Call struct {
	Time    time.Time
	Allowed bool
	Detail  string
}

// Resolved tells whether the call got as far as an address: it was not
// denied by a failed name lookup.
func (c Call) Resolved() bool { return !strings.HasPrefix(c.Detail, "lookup ") }

// ReadCalls parses the call lines of a caller app's log.
func ReadCalls(path string) ([]Call, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var calls []Call
	s := bufio.NewScanner(f)
	for s.Scan() {
		if c, ok := parseCall(s.Text()); ok {
			calls = append(calls, c)
		}
	}
	return calls, s.Err()
}

func parseCall(line string) (Call, bool) {
	ts, rest, ok := strings.Cut(line, " ")
	if !ok {
		return Call{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return Call{}, false
	}
	verdict, detail, _ := strings.Cut(rest, " ")
	switch verdict {
	case "allowed", "denied":
		return Call{Time: t, Allowed: verdict == "allowed", Detail: detail}, true
	}
	return Call{}, false
}

// WaitCall polls the caller's log for the first call at or after since
// that matches, until deadline.
func WaitCall(ctx context.Context, log string, since, deadline time.Time, match func(Call) bool) (Call, error) {
	for {
		calls, err := ReadCalls(log)
		if err != nil {
			return Call{}, err
		}
		for _, c := range calls {
			if !c.Time.Before(since) && match(c) {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			last := "no calls at all"
			if len(calls) > 0 {
				last = "last call: " + calls[len(calls)-1].Detail
			}
			return Call{}, fmt.Errorf("no such call in %s by %s (%s)", log, deadline.Format(time.TimeOnly), last)
		}
		select {
		case <-ctx.Done():
			return Call{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
