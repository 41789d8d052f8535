package fleet

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/netman-release/netman/src/lifecycle"
)

// Report is one run's results, printed and written as JSON.
type Report struct {
	Cells    int    `json:"cells"`
	Apps     int    `json:"apps"`
	Policies int    `json:"policies"`
	Mode     string `json:"mode"`

	Steady    *Steady  `json:"steady_state,omitempty"`
	Change    *Change  `json:"policy_change,omitempty"`
	Restart   *Restart `json:"cells_restart,omitempty"`
	PSI       *PSI     `json:"policy_server_restart,omitempty"`
	Leases    *Leases  `json:"leases,omitempty"`
	SlowDB    *SlowDB  `json:"slow_database,omitempty"`
	StartedIn Seconds  `json:"fleet_start_seconds"`
}

// Seconds is a duration written as seconds.
type Seconds float64

func secs(d time.Duration) Seconds {
	return Seconds(float64(d.Round(time.Millisecond)) / float64(time.Second))
}

// Dist is a distribution of delays.
type Dist struct {
	N   int     `json:"n"`
	P50 Seconds `json:"p50"`
	P99 Seconds `json:"p99"`
	Max Seconds `json:"max"`
}

func dist(d []time.Duration) Dist {
	if len(d) == 0 {
		return Dist{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return Dist{N: len(s), P50: secs(q(0.5)), P99: secs(q(0.99)), Max: secs(s[len(s)-1])}
}

func (d Dist) String() string {
	return fmt.Sprintf("p50 %.3f s, p99 %.3f s, max %.3f s (n=%d)", d.P50, d.P99, d.Max, d.N)
}

// Usage is a server's CPU (share of one core) and resident memory.
type Usage struct {
	CPUPercent float64 `json:"cpu_percent_of_core"`
	RSSMiB     float64 `json:"rss_mib"`
}

// Steady is scenario 1: the fleet idle after convergence.
type Steady struct {
	Window          Seconds `json:"window_seconds"`
	Internal        Usage   `json:"policy_server_internal"`
	Controller      Usage   `json:"silk_controller"`
	RequestsPerSec  float64 `json:"internal_requests_per_second"`
	DBQueriesPerSec float64 `json:"policy_db_queries_per_second"`
	Requests        Dist    `json:"internal_request_seconds"`
	SimCPU          float64 `json:"simulation_cpu_percent_of_core"` // the cells' process: near 200 means the 2 cores were saturated by the simulation itself
}

// Change is scenario 2: time from the external API's write to the rule
// enforced on every affected cell.
type Change struct {
	Create Dist    `json:"create"`
	Delete Dist    `json:"delete"`
	All    Dist    `json:"all"`
	Stale  int     `json:"stale"`                          // changes not enforced within StaleAfter
	SimCPU float64 `json:"simulation_cpu_percent_of_core"` // the cells' process: near 200 means the 2 cores were saturated by the simulation itself
}

// Restart is scenario 3: cells restarted together while policies change.
type Restart struct {
	Cells       int     `json:"cells"`
	Requests    Dist    `json:"internal_request_seconds"`
	Failed      int     `json:"failed_requests"`
	OverOne     int     `json:"requests_over_1s"`
	Changes     Dist    `json:"change_seconds"`
	Converged   Seconds `json:"restarted_cells_first_enforce_seconds"`
	Unconverged int     `json:"restarted_cells_never_enforced"`
	StaleAfter  int     `json:"stale_after_window"`
	RulesLost   int64   `json:"rules_lost"`
	SimCPU      float64 `json:"simulation_cpu_percent_of_core"` // the cells' process: near 200 means the 2 cores were saturated by the simulation itself
}

// PSI is scenario 4: policy-server-internal restarted under load.
type PSI struct {
	Down       Seconds `json:"down_seconds"`
	Stopping   Seconds `json:"stopping_seconds"` // SIGTERM to exit; the rest of Down is start-up
	Changes    Dist    `json:"change_seconds"`
	CaughtUp   Seconds `json:"last_change_enforced_after_restart_seconds"`
	Failed     int     `json:"failed_requests"`
	StaleAfter int     `json:"stale_after_window"`
	RulesLost  int64   `json:"rules_lost"`
	SimCPU     float64 `json:"simulation_cpu_percent_of_core"` // the cells' process: near 200 means the 2 cores were saturated by the simulation itself
}

// Leases is scenario 5: silk-controller with every lease taken, every
// cell renewing.
type Leases struct {
	Cells      int     `json:"cells"`
	StartedIn  Seconds `json:"start_seconds"`
	Renew      Dist    `json:"renew_seconds"`
	List       Dist    `json:"routable_leases_seconds"`
	Failed     int     `json:"failed_polls"`
	Converged  int     `json:"cells_holding_every_route"`
	Controller Usage   `json:"silk_controller"`
	Window     Seconds `json:"window_seconds"`
}

// SlowDB is scenario 6: the policy database slow; agents keep their rules
// and catch up once it is fast again.
type SlowDB struct {
	Latency   Seconds `json:"added_latency_seconds"`
	SlowFor   Seconds `json:"slow_for_seconds"`
	Failed    int     `json:"failed_requests"`
	RulesLost int64   `json:"rules_lost"`
	CaughtUp  Seconds `json:"caught_up_after_recovery_seconds"`
	Stale     int     `json:"stale"`
	SimCPU    float64 `json:"simulation_cpu_percent_of_core"` // the cells' process: near 200 means the 2 cores were saturated by the simulation itself
}

// Run starts the fleet, runs the scenarios (1–6; scenario 5 runs its own
// controller and cells) and stops it.
func Run(ctx context.Context, opts Options, scenarios []int) (*Report, error) {
	f, err := New(opts)
	if err != nil {
		return nil, err
	}
	opts = f.opts
	r := &Report{Cells: opts.Cells, Apps: opts.Apps, Policies: opts.Policies, Mode: opts.Mode}
	want := map[int]bool{}
	for _, s := range scenarios {
		want[s] = true
	}
	needFleet := want[1] || want[2] || want[3] || want[4] || want[6]
	if needFleet {
		t0 := time.Now()
		defer f.Stop()
		if err := f.Start(ctx); err != nil {
			return nil, err
		}
		r.StartedIn = secs(time.Since(t0))
	}
	steps := []struct {
		n   int
		run func(context.Context) error
	}{
		{1, func(ctx context.Context) (err error) { r.Steady, err = f.steady(ctx); return }},
		{2, func(ctx context.Context) (err error) { r.Change, err = f.change(ctx); return }},
		{3, func(ctx context.Context) (err error) { r.Restart, err = f.restartCells(ctx); return }},
		{4, func(ctx context.Context) (err error) { r.PSI, err = f.restartInternal(ctx); return }},
		{6, func(ctx context.Context) (err error) { r.SlowDB, err = f.slowDB(ctx); return }},
	}
	for _, s := range steps {
		if !want[s.n] {
			continue
		}
		f.logf("scenario %d", s.n)
		before, _ := procUsage(os.Getpid())
		t0 := time.Now()
		if err := s.run(ctx); err != nil {
			return r, fmt.Errorf("scenario %d: %w", s.n, err)
		}
		after, _ := procUsage(os.Getpid())
		sim := 100 * float64(after.cpu-before.cpu) / float64(time.Since(t0))
		switch s.n {
		case 1:
			r.Steady.SimCPU = sim
		case 2:
			r.Change.SimCPU = sim
		case 3:
			r.Restart.SimCPU = sim
		case 4:
			r.PSI.SimCPU = sim
		case 6:
			r.SlowDB.SimCPU = sim
		}
	}
	if needFleet && want[5] {
		f.Stop()
	}
	if want[5] {
		f.logf("scenario 5")
		if r.Leases, err = f.leases(ctx); err != nil {
			return r, fmt.Errorf("scenario 5: %w", err)
		}
	}
	return r, nil
}

func usageOver(s *server, window time.Duration, before usage) (Usage, error) {
	after, err := s.usage()
	if err != nil {
		return Usage{}, err
	}
	return Usage{
		CPUPercent: 100 * float64(after.cpu-before.cpu) / float64(window),
		RSSMiB:     float64(after.rss) / (1 << 20),
	}, nil
}

func (f *Fleet) steady(ctx context.Context) (*Steady, error) {
	// An agent trusts its long-poll only once one has come back (up to
	// 25 s after start); until then it also polls plainly. Measure after.
	if f.opts.Mode == ModeLongPoll {
		if wait := time.Until(f.converged.Add(f.opts.Warmup)); wait > 0 {
			f.logf("steady state: waiting %s for every agent's first long-poll to come back", wait.Round(time.Second))
			time.Sleep(wait)
		}
	}
	f.requests.take()
	ib, err := f.internal.usage()
	if err != nil {
		return nil, err
	}
	cb, err := f.silk.usage()
	if err != nil {
		return nil, err
	}
	q0, err := f.internal.queries()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(f.opts.Idle):
	}
	window := time.Since(t0)
	s := &Steady{Window: secs(window)}
	if s.Internal, err = usageOver(f.internal, window, ib); err != nil {
		return nil, err
	}
	if s.Controller, err = usageOver(f.silk, window, cb); err != nil {
		return nil, err
	}
	q1, err := f.internal.queries()
	if err != nil {
		return nil, err
	}
	reqs, _ := f.requests.take()
	s.Requests = dist(reqs)
	s.RequestsPerSec = float64(len(reqs)) / window.Seconds()
	s.DBQueriesPerSec = float64(q1-q0) / window.Seconds()
	return s, nil
}

// changeSeq numbers the workload's policies so each has a port of its own.
var changeSeq struct {
	sync.Mutex
	n int
}

func nextPort() int {
	changeSeq.Lock()
	defer changeSeq.Unlock()
	changeSeq.n++
	return 30000 + changeSeq.n
}

// oneChange creates (or deletes) a policy from a random source to a
// random destination app and returns a channel receiving the delay until
// the destination's cell enforced it. The policy's rule goes on the
// destination's cell: the source app already has a tag and mark.
func (f *Fleet) oneChange(ctx context.Context, rng *rand.Rand, del *policyBody) (policyBody, pending, error) {
	var p policyBody
	var dst int
	if del != nil {
		p = *del
		for i, a := range f.apps {
			if a.guid == p.Destination.ID {
				dst = i
			}
		}
	} else {
		src := rng.IntN(len(f.apps))
		dst = rng.IntN(len(f.apps))
		p = makePolicy(f.apps[src].guid, f.apps[dst].guid, nextPort())
	}
	c := f.cells[f.apps[dst].cell]
	t0 := time.Now()
	met := c.expectRule(f.appIP(dst), p.Destination.Ports.Start, del == nil, t0)
	if err := f.writePolicies(ctx, del != nil, []policyBody{p}); err != nil {
		return p, pending{}, err
	}
	return p, met, nil
}

// await waits for each channel up to the stale limit; it returns the
// delays and how many were stale.
func (f *Fleet) await(ctx context.Context, chans []pending) ([]time.Duration, int, error) {
	var out []time.Duration
	stale := 0
	deadline := time.Now().Add(f.opts.StaleAfter)
	for _, ch := range chans {
		select {
		case at := <-ch.met:
			out = append(out, at.Sub(ch.since))
		case <-time.After(time.Until(deadline)):
			stale++
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	return out, stale, nil
}

func (f *Fleet) change(ctx context.Context) (*Change, error) {
	rng := rand.New(rand.NewPCG(2, uint64(f.opts.Cells)))
	var created []policyBody
	var creates, deletes []time.Duration
	stale := 0
	for i := range 2 * f.opts.Changes {
		var del *policyBody
		if i >= f.opts.Changes {
			del = &created[i-f.opts.Changes]
		}
		p, met, err := f.oneChange(ctx, rng, del)
		if err != nil {
			return nil, err
		}
		d, s, err := f.await(ctx, []pending{met})
		if err != nil {
			return nil, err
		}
		stale += s
		if del == nil {
			created = append(created, p)
			creates = append(creates, d...)
		} else {
			deletes = append(deletes, d...)
		}
		// Let the fleet settle, so each change is measured on its own.
		time.Sleep(time.Second + time.Duration(rng.IntN(500))*time.Millisecond)
	}
	return &Change{Create: dist(creates), Delete: dist(deletes), All: dist(append(creates, deletes...)), Stale: stale}, nil
}

// changesDuring makes a change every interval until stop is closed, and
// returns the channels of their enforcement.
func (f *Fleet) changesDuring(ctx context.Context, rng *rand.Rand, every time.Duration, stop <-chan struct{}) ([]pending, error) {
	var chans []pending
	for {
		_, met, err := f.oneChange(ctx, rng, nil)
		if err != nil {
			return chans, err
		}
		chans = append(chans, met)
		select {
		case <-stop:
			return chans, nil
		case <-time.After(every):
		}
	}
}

// changesAround makes a change every interval (changesDuring) from lead
// before disrupt until settle after it returns, and returns the changes'
// enforcement channels: the scaffold of the disruption scenarios.
func (f *Fleet) changesAround(ctx context.Context, rng *rand.Rand, every, lead, settle time.Duration, disrupt func() error) ([]pending, error) {
	stop := make(chan struct{})
	var chans []pending
	var changeErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		chans, changeErr = f.changesDuring(ctx, rng, every, stop)
	}()
	err := func() error {
		if !lifecycle.Sleep(ctx, lead) {
			return ctx.Err()
		}
		if err := disrupt(); err != nil {
			return err
		}
		if !lifecycle.Sleep(ctx, settle) {
			return ctx.Err()
		}
		return nil
	}()
	close(stop)
	<-done
	if err != nil {
		return nil, err
	}
	return chans, changeErr
}

// floors records every cell's current policy elements as its floor.
func (f *Fleet) floors() {
	for _, c := range f.cells {
		n, _ := c.counts()
		c.setFloor(n)
	}
}

func (f *Fleet) restartCells(ctx context.Context) (*Restart, error) {
	rng := rand.New(rand.NewPCG(3, uint64(f.opts.Cells)))
	f.floors()
	lost0 := f.rulesLost.load()
	f.requests.take()
	picked := rng.Perm(len(f.cells))[:f.opts.Restart]
	var cells []*cell
	for _, i := range picked {
		cells = append(cells, f.cells[i])
	}
	var t0 time.Time
	// The restarted cells have converged once each wrote (a restarted
	// agent reads the kernel and enforces at once) or found nothing to
	// change: 5 s after the restart, wait for each one's first good cycle
	// through its expectations.
	chans, err := f.changesAround(ctx, rng, 500*time.Millisecond, 0, 5*time.Second, func() error {
		t0 = time.Now()
		var wg sync.WaitGroup
		for _, c := range cells {
			wg.Add(1)
			go func() { defer wg.Done(); c.stop() }()
		}
		wg.Wait()
		return f.startCells(ctx, cells)
	})
	if err != nil {
		return nil, err
	}
	delays, stale, err := f.await(ctx, chans)
	if err != nil {
		return nil, err
	}
	converged, unconverged := time.Duration(0), 0
	for _, c := range cells {
		c.mu.Lock()
		if c.firstWrite.IsZero() {
			unconverged++
		} else {
			converged = max(converged, c.firstWrite.Sub(t0))
		}
		c.mu.Unlock()
	}
	reqs, failed := f.requests.take()
	over := 0
	for _, d := range reqs {
		if d > time.Second {
			over++
		}
	}
	return &Restart{
		Cells: len(cells), Requests: dist(reqs), Failed: failed, OverOne: over,
		Changes: dist(delays), Converged: secs(converged), Unconverged: unconverged, StaleAfter: stale,
		RulesLost: f.rulesLost.load() - lost0,
	}, nil
}

func (f *Fleet) restartInternal(ctx context.Context) (*PSI, error) {
	rng := rand.New(rand.NewPCG(4, uint64(f.opts.Cells)))
	f.floors()
	lost0 := f.rulesLost.load()
	f.requests.take()
	var t0, stopped, up time.Time
	chans, err := f.changesAround(ctx, rng, time.Second, 2*time.Second, 3*time.Second, func() error {
		t0 = time.Now()
		f.internal.stop()
		stopped = time.Now()
		err := f.internal.start(ctx)
		up = time.Now()
		return err
	})
	if err != nil {
		return nil, err
	}
	delays, stale, err := f.await(ctx, chans)
	if err != nil {
		return nil, err
	}
	caught := time.Duration(0)
	for i, ch := range chans {
		if i < len(delays) {
			caught = max(caught, ch.since.Add(delays[i]).Sub(up))
		}
	}
	_, failed := f.requests.take()
	return &PSI{
		Down: secs(up.Sub(t0)), Stopping: secs(stopped.Sub(t0)), Changes: dist(delays), CaughtUp: secs(caught), Failed: failed,
		StaleAfter: stale, RulesLost: f.rulesLost.load() - lost0,
	}, nil
}

func (f *Fleet) slowDB(ctx context.Context) (*SlowDB, error) {
	rng := rand.New(rand.NewPCG(6, uint64(f.opts.Cells)))
	f.floors()
	lost0 := f.rulesLost.load()
	f.requests.take()
	chans, err := f.changesAround(ctx, rng, 2*time.Second, 0, 0, func() error {
		if err := f.internal.setLatency(f.opts.SlowDB); err != nil {
			return err
		}
		if !lifecycle.Sleep(ctx, f.opts.SlowFor) {
			return ctx.Err()
		}
		return nil
	})
	if lerr := f.internal.setLatency(0); err == nil {
		err = lerr
	}
	recovered := time.Now()
	if err != nil {
		return nil, err
	}
	latest := recovered
	stale := 0
	for _, ch := range chans {
		select {
		case at := <-ch.met:
			latest = maxTime(latest, at)
		case <-time.After(time.Until(recovered.Add(f.opts.StaleAfter))):
			stale++
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	_, failed := f.requests.take()
	caught := latest.Sub(recovered)
	return &SlowDB{
		Latency: secs(f.opts.SlowDB), SlowFor: secs(f.opts.SlowFor), Failed: failed,
		RulesLost: f.rulesLost.load() - lost0, CaughtUp: secs(max(0, caught)), Stale: stale,
	}, nil
}

// Print writes the report for people.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "netman-fleet: %d cells, %d apps, %d policies, agents in %s mode (fleet up in %.1f s)\n", r.Cells, r.Apps, r.Policies, r.Mode, r.StartedIn)
	if s := r.Steady; s != nil {
		fmt.Fprintf(w, "1 steady state (%.0f s): policy-server-internal %.1f%% of a core, %.0f MiB; silk-controller %.1f%%, %.0f MiB; %.0f internal requests/s (%s); %.1f DB queries/s; simulation %.0f%% of a core\n",
			s.Window, s.Internal.CPUPercent, s.Internal.RSSMiB, s.Controller.CPUPercent, s.Controller.RSSMiB, s.RequestsPerSec, s.Requests, s.DBQueriesPerSec, s.SimCPU)
	}
	if c := r.Change; c != nil {
		fmt.Fprintf(w, "2 policy change to every affected cell: create %s; delete %s; all %s; stale %d; simulation %.0f%% of a core\n", c.Create, c.Delete, c.All, c.Stale, c.SimCPU)
	}
	if c := r.Restart; c != nil {
		fmt.Fprintf(w, "3 %d cells restarted together: requests %s, %d over 1 s, %d failed; changes %s; restarted cells' first enforce %.2f s after the stop (%d never); stale %d; rules lost %d; simulation %.0f%% of a core\n",
			c.Cells, c.Requests, c.OverOne, c.Failed, c.Changes, c.Converged, c.Unconverged, c.StaleAfter, c.RulesLost, c.SimCPU)
	}
	if p := r.PSI; p != nil {
		fmt.Fprintf(w, "4 policy-server-internal restarted: down %.2f s (%.2f s of it stopping); changes %s; last change enforced %.2f s after it was back; %d failed requests; stale %d; rules lost %d; simulation %.0f%% of a core\n",
			p.Down, p.Stopping, p.Changes, p.CaughtUp, p.Failed, p.StaleAfter, p.RulesLost, p.SimCPU)
	}
	if l := r.Leases; l != nil {
		fmt.Fprintf(w, "5 silk-controller, %d leases (up in %.1f s): renew %s; routable leases %s; %d failed polls; %d cells hold every route; silk-controller %.1f%% of a core, %.0f MiB over %.0f s\n",
			l.Cells, l.StartedIn, l.Renew, l.List, l.Failed, l.Converged, l.Controller.CPUPercent, l.Controller.RSSMiB, l.Window)
	}
	if s := r.SlowDB; s != nil {
		fmt.Fprintf(w, "6 database %.3f s slower per query for %.0f s: %d failed requests, rules lost %d, caught up %.2f s after recovery, stale %d; simulation %.0f%% of a core\n",
			s.Latency, s.SlowFor, s.Failed, s.RulesLost, s.CaughtUp, s.Stale, s.SimCPU)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
