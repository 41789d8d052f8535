package perftestsd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Subjects of the test (upstream's).
const (
	SubjectRegister       = "service-discovery.register"
	SubjectRouterRegister = "router.register"
)

// MessageSize is the size of every published message, in bytes.
const MessageSize = 1024

// routerSubscribers is the number of subscribers on router.register the
// CPU check adds.
const routerSubscribers = 2

// flushTimeout bounds the wait for NATS to acknowledge a publisher's
// messages.
const flushTimeout = 30 * time.Second

// Options tune a run; the zero value is the job's.
type Options struct {
	// Out receives the report (io.Discard when nil).
	Out io.Writer
	// Samples is how often each check runs (3).
	Samples int
	// CPUWindow is the least time NATS's CPU is sampled per phase of the CPU
	// check (3s); CPUInterval is the time between two samples (500ms).
	CPUWindow, CPUInterval time.Duration
	// CPUTolerance replaces the package's CPUTolerance when positive (tests
	// whose NATS server shares its process with them and the race detector
	// measure that process, not NATS alone).
	CPUTolerance float64
	// SettleTimeout bounds the wait for the subscribers' counters to show
	// every published message (10s).
	SettleTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Samples <= 0 {
		o.Samples = 3
	}
	if o.CPUWindow <= 0 {
		o.CPUWindow = 3 * time.Second
	}
	if o.CPUInterval <= 0 {
		o.CPUInterval = 500 * time.Millisecond
	}
	if o.CPUTolerance <= 0 {
		o.CPUTolerance = CPUTolerance
	}
	if o.SettleTimeout <= 0 {
		o.SettleTimeout = 10 * time.Second
	}
	return o
}

// payload is one message: readable JSON of MessageSize bytes that names its
// sender and carries no route, so that the controllers and routers that
// receive it log it as malformed and register nothing.
var payload = func() []byte {
	head, tail := `{"performance_test_sd":"`, `"}`
	return []byte(head + strings.Repeat("x", MessageSize-len(head)-len(tail)) + tail)
}()

// Run runs both checks against the NATS servers of c, writes the report
// to o.Out and returns why the test failed (nil when it passed).
func Run(ctx context.Context, c Config, o Options) error {
	if err := c.Validate(); err != nil {
		return err
	}
	o = o.withDefaults()
	r := &runner{cfg: c, opts: o, mon: newMonitor(c), out: o.Out}
	r.printf("performance-test-sd: NATS %s (port %d, monitoring port %d), %d messages of %d bytes from %d publishers, %d samples\n",
		strings.Join(c.Hosts(), ", "), c.NatsPort, c.NatsMonitoringPort, c.NumMessages, MessageSize, c.NumPublishers, o.Samples)
	var errs []error
	if err := r.delivery(ctx); err != nil {
		errs = append(errs, fmt.Errorf("%s subscribers: %w", SubjectRegister, err))
	}
	if ctx.Err() == nil {
		if err := r.cpu(ctx); err != nil {
			errs = append(errs, fmt.Errorf("NATS CPU: %w", err))
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		r.printf("FAIL\n")
	} else {
		r.printf("PASS\n")
	}
	return err
}

type runner struct {
	cfg  Config
	opts Options
	mon  *monitor
	out  io.Writer
}

func (r *runner) printf(format string, args ...any) { fmt.Fprintf(r.out, format, args...) }

// delivery is the first check: every connection subscribed to
// service-discovery.register receives every message published on it.
func (r *runner) delivery(ctx context.Context) error {
	r.printf("\n== every %s subscriber receives every message\n", SubjectRegister)
	var errs []error
	for i := 1; i <= r.opts.Samples; i++ {
		if err := r.deliverySample(ctx, i); err != nil {
			errs = append(errs, fmt.Errorf("sample %d: %w", i, err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

func (r *runner) deliverySample(ctx context.Context, i int) error {
	all, err := r.mon.connections(ctx, SubjectRegister)
	if err != nil {
		return err
	}
	before := map[connKey]conn{}
	for k, c := range all {
		if c.subscribed {
			before[k] = c
		}
	}
	if len(before) == 0 {
		return fmt.Errorf("no connection subscribes to %s on %s: is service-discovery-controller running?",
			SubjectRegister, strings.Join(r.cfg.Hosts(), ", "))
	}
	slowBefore, err := r.mon.varz(ctx)
	if err != nil {
		return err
	}
	stats, err := r.publish(ctx, SubjectRegister)
	if err != nil {
		return err
	}
	r.printf("sample %d/%d: %s\n", i, r.opts.Samples, stats)

	want := int64(r.cfg.NumMessages)
	var after map[connKey]conn
	deadline := time.Now().Add(r.opts.SettleTimeout)
	for {
		if after, err = r.mon.connections(ctx, SubjectRegister); err != nil {
			return err
		}
		if settled(before, after, want) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	slowAfter, err := r.mon.varz(ctx)
	if err != nil {
		return err
	}

	var errs []error
	for _, k := range sortedKeys(before) {
		b := before[k]
		a, ok := after[k]
		var problem string
		got := a.OutMsgs - b.OutMsgs
		switch {
		case !ok:
			problem = "disconnected during the sample"
		case !a.subscribed:
			problem = fmt.Sprintf("unsubscribed from %s during the sample after receiving %d of %d messages", SubjectRegister, got, want)
		case got < want:
			problem = fmt.Sprintf("received %d of %d messages", got, want)
		}
		if problem != "" {
			r.printf("  FAIL %s (%s): %s\n", b.label(), k, problem)
			errs = append(errs, fmt.Errorf("%s (%s): %s", b.label(), k, problem))
			continue
		}
		note := ""
		if got > want {
			note = fmt.Sprintf(" (%d more from other publishers)", got-want)
		}
		r.printf("  ok   %s (%s): received %d of %d messages%s\n", b.label(), k, got, want, note)
	}
	if n := slowConsumers(slowAfter) - slowConsumers(slowBefore); n > 0 {
		errs = append(errs, fmt.Errorf("%d new slow consumers during the sample", n))
		r.printf("  FAIL %d new slow consumers\n", n)
	}
	return errors.Join(errs...)
}

// settled: every subscriber of before has left, stopped subscribing or
// received at least want more messages.
func settled(before, after map[connKey]conn, want int64) bool {
	for k, b := range before {
		if a, ok := after[k]; ok && a.subscribed && a.OutMsgs-b.OutMsgs < want {
			return false
		}
	}
	return true
}

func sortedKeys(m map[connKey]conn) []connKey {
	return slices.SortedFunc(maps.Keys(m), func(a, b connKey) int {
		if c := strings.Compare(a.server, b.server); c != 0 {
			return c
		}
		return cmp.Compare(a.cid, b.cid)
	})
}

// cpu is the second check: NATS's CPU while router.register is published
// to two subscribers, with and without service-discovery.register traffic
// besides, median and mean within CPUTolerance; no slow consumers.
func (r *runner) cpu(ctx context.Context) error {
	r.printf("\n== NATS CPU: %s alone vs. with %s\n", SubjectRouterRegister, SubjectRegister)
	var errs []error
	for i := 1; i <= r.opts.Samples && ctx.Err() == nil; i++ {
		alone, err := r.phase(ctx, SubjectRouterRegister)
		if err != nil {
			errs = append(errs, fmt.Errorf("sample %d, %s alone: %w", i, SubjectRouterRegister, err))
			continue
		}
		both, err := r.phase(ctx, SubjectRouterRegister, SubjectRegister)
		if err != nil {
			errs = append(errs, fmt.Errorf("sample %d, with %s: %w", i, SubjectRegister, err))
			continue
		}
		for _, host := range r.cfg.Hosts() {
			cmp, err := CompareCPU(alone.cpu[host], both.cpu[host], r.opts.CPUTolerance)
			r.printf("sample %d/%d, %s: CPU median %.1f%% / mean %.1f%% (%d samples, mem %s) with %s alone; median %.1f%% / mean %.1f%% (%d samples, mem %s) with %s too\n",
				i, r.opts.Samples, host,
				cmp.RouterOnly.Median, cmp.RouterOnly.Mean, cmp.RouterOnly.Samples, mib(alone.mem[host]), SubjectRouterRegister,
				cmp.Both.Median, cmp.Both.Mean, cmp.Both.Samples, mib(both.mem[host]), SubjectRegister)
			if err != nil {
				r.printf("  FAIL %v\n", err)
				errs = append(errs, fmt.Errorf("sample %d, %s: %w", i, host, err))
			}
		}
	}
	return errors.Join(errs...)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// phaseResult is what one phase of the CPU check measured, per server.
type phaseResult struct {
	cpu map[string][]float64
	mem map[string]int64
}

// phase subscribes two connections to router.register, publishes
// num_messages on each subject from num_publishers publishers each, and
// samples every server's /varz until publishing is done and CPUWindow has
// passed.
func (r *runner) phase(ctx context.Context, subjects ...string) (phaseResult, error) {
	res := phaseResult{cpu: map[string][]float64{}, mem: map[string]int64{}}
	for i := range routerSubscribers {
		nc, err := r.connect(fmt.Sprintf("performance-test-sd-subscriber-%d", i))
		if err != nil {
			return res, err
		}
		defer nc.Close()
		sub, err := nc.Subscribe(SubjectRouterRegister, func(*nats.Msg) {})
		if err != nil {
			return res, fmt.Errorf("subscribing to %s: %w", SubjectRouterRegister, err)
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			return res, err
		}
		if err := nc.Flush(); err != nil {
			return res, fmt.Errorf("subscribing to %s: %w", SubjectRouterRegister, err)
		}
	}
	start, err := r.mon.varz(ctx)
	if err != nil {
		return res, err
	}

	window := time.After(r.opts.CPUWindow)
	type published struct {
		stats publishStats
		err   error
	}
	done := make(chan published, len(subjects))
	for _, s := range subjects {
		go func() {
			st, err := r.publish(ctx, s)
			done <- published{st, err}
		}()
	}
	tick := time.NewTicker(r.opts.CPUInterval)
	defer tick.Stop()
	var errs []error
	pending, windowOpen := len(subjects), true
	var last map[string]varz
	for pending > 0 || windowOpen {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case p := <-done:
			pending--
			if p.err != nil {
				errs = append(errs, p.err)
			} else {
				r.printf("  %s\n", p.stats)
			}
		case <-window:
			windowOpen = false
		case <-tick.C:
			v, err := r.mon.varz(ctx)
			if err != nil {
				return res, err
			}
			for host, s := range v {
				res.cpu[host] = append(res.cpu[host], s.CPU)
				res.mem[host] = s.Mem
			}
			last = v
		}
	}
	if last == nil {
		if last, err = r.mon.varz(ctx); err != nil {
			return res, err
		}
	}
	if n := slowConsumers(last) - slowConsumers(start); n > 0 {
		errs = append(errs, fmt.Errorf("%d new slow consumers", n))
	}
	return res, errors.Join(errs...)
}

// publishStats describes one round of publishing.
type publishStats struct {
	subject    string
	messages   int
	elapsed    time.Duration
	publishers []time.Duration
	counts     []int
}

func (s publishStats) String() string {
	var min, max float64
	for i, d := range s.publishers {
		rate := msgRate(s.counts[i], d)
		if i == 0 || rate < min {
			min = rate
		}
		if rate > max {
			max = rate
		}
	}
	return fmt.Sprintf("published %d messages on %s from %d publishers in %s: %.0f msgs/s overall, %.0f to %.0f msgs/s per publisher",
		s.messages, s.subject, len(s.publishers), s.elapsed.Round(time.Microsecond), msgRate(s.messages, s.elapsed), min, max)
}

func msgRate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// shares splits n messages among p publishers, the first ones taking one
// more when it does not divide.
func shares(n, p int) []int {
	out := make([]int, p)
	for i := range out {
		out[i] = n / p
		if i < n%p {
			out[i]++
		}
	}
	return out
}

// publish publishes num_messages on subject from num_publishers
// connections at once, each flushing before it counts as done.
func (r *runner) publish(ctx context.Context, subject string) (publishStats, error) {
	counts := shares(r.cfg.NumMessages, r.cfg.NumPublishers)
	conns := make([]*nats.Conn, len(counts))
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()
	for i := range conns {
		nc, err := r.connect(fmt.Sprintf("performance-test-sd-publisher-%d", i))
		if err != nil {
			return publishStats{}, err
		}
		conns[i] = nc
	}
	st := publishStats{subject: subject, messages: r.cfg.NumMessages, counts: counts, publishers: make([]time.Duration, len(counts))}
	errs := make([]error, len(counts))
	var wg sync.WaitGroup
	start := time.Now()
	for i, nc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			for range counts[i] {
				if err := nc.Publish(subject, payload); err != nil {
					errs[i] = fmt.Errorf("publishing on %s: %w", subject, err)
					return
				}
			}
			if err := nc.FlushTimeout(flushTimeout); err != nil {
				errs[i] = fmt.Errorf("publishing on %s: %w", subject, err)
				return
			}
			st.publishers[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	st.elapsed = time.Since(start)
	return st, errors.Join(errs...)
}

// connect opens one connection to the NATS servers.
func (r *runner) connect(name string) (*nats.Conn, error) {
	servers := make([]string, 0, len(r.cfg.Hosts()))
	for _, h := range r.cfg.Hosts() {
		servers = append(servers, "nats://"+net.JoinHostPort(h, strconv.Itoa(r.cfg.NatsPort)))
	}
	opts := []nats.Option{nats.Name(name), nats.Timeout(10 * time.Second), nats.MaxReconnects(0)}
	if r.cfg.NatsUsername != "" || r.cfg.NatsPassword != "" {
		opts = append(opts, nats.UserInfo(r.cfg.NatsUsername, r.cfg.NatsPassword))
	}
	nc, err := nats.Connect(strings.Join(servers, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS %s: %w", strings.Join(r.cfg.Hosts(), ","), err)
	}
	return nc, nil
}
