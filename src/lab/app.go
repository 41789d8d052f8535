package lab

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
	"time"
)

// AppPort is where every lab app listens.
const AppPort = 8080

// RunApp is `netman-lab app`: the process inside an app container. It
// serves HTTP on --listen, answering "hello from <name>", and with --call
// it also calls that URL every --every, on a new connection each time (a
// policy applies to new connections), and writes a call line to out when
// the outcome changes and at least once a second otherwise, stamped with
// the time the call started:
//
//	<RFC 3339 time> allowed|denied <detail>
func RunApp(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("netman-lab app", flag.ContinueOnError)
	name := fs.String("name", "app", "the app's name")
	listen := fs.String("listen", fmt.Sprintf(":%d", AppPort), "HTTP listen address")
	call := fs.String("call", "", "URL to call")
	every := fs.Duration("every", 20*time.Millisecond, "how often to call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	c := &caller{url: *call, next: 1, done: map[uint64]result{}}
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
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
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
			if outcome := callOnce(ctx, client, c.url); ctx.Err() == nil {
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
// stamped with the call's start, when allowed turns to denied or back, or
// a second passed.
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
		if verdictOf(r.outcome) != verdictOf(c.last) || r.start.Sub(c.printed) >= time.Second {
			fmt.Fprintf(out, "%s %s\n", r.start.Format(time.RFC3339Nano), r.outcome)
			c.printed = r.start
		}
		c.last = r.outcome
	}
}

// verdictOf is "allowed" or "denied" (or "" before the first call).
func verdictOf(outcome string) string {
	v, _, _ := strings.Cut(outcome, " ")
	return v
}

func callOnce(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "denied " + err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		if nerr, ok := err.(net.Error); ok && nerr.Timeout() {
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
