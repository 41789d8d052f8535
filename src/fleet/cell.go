package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"sigs.k8s.io/knftables"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/silk/daemon"
)

// cell is one simulated Diego cell: its kernel (a FakeSystem for
// silk-daemon, an nft.Fake for the agent) outlives restarts of its
// daemons, as a real cell's kernel does.
type cell struct {
	f          *Fleet
	index      int
	underlayIP string
	dir        string
	sys        *daemon.FakeSystem
	nft        *watchedNFT

	mu         sync.Mutex
	cancel     context.CancelFunc
	done       chan struct{}
	err        error
	ips        []string // container IPs by slot, once the lease is known
	floor      int      // fewest c2c-policies elements the cell may hold
	expects    []*expect
	elements   int // c2c-policies elements after the last write
	lastWrite  time.Time
	firstWrite time.Time // first write since the last start
}

// expect is a rule a cell must come to hold (or drop).
type expect struct {
	ip, port string
	present  bool
	since    time.Time
	met      chan time.Time // receives when it was met
}

func newCell(f *Fleet, i int) *cell {
	ip := fmt.Sprintf("10.%d.%d.%d", 128+i/65536, (i/256)%256, i%256)
	c := &cell{f: f, index: i, underlayIP: ip, dir: filepath.Join(f.opts.Dir, "cells", strconv.Itoa(i))}
	c.sys = daemon.NewFakeSystem(netip.MustParseAddr(ip))
	c.nft = &watchedNFT{Fake: nft.NewFake(), cell: c}
	return c
}

// daemonConfig is the cell's silk-daemon config.
func (c *cell) daemonConfig(url string, prefix int, network string) daemon.Config {
	return daemon.Config{
		UnderlayIP: c.underlayIP, SubnetPrefixLength: prefix, OverlayNetwork: daemon.OverlayNetwork{network},
		VTEPName: "silk-vtep", ConnectivityServerURL: url,
		CACertFile: c.f.certs.ca, ClientCertFile: c.f.certs.clientCert, ClientKeyFile: c.f.certs.clientKey,
		VNI: 1, VTEPPort: 4789, PollInterval: c.f.opts.LeasePollSeconds,
		Datastore: filepath.Join(c.dir, "silk-store.json"), PartitionToleranceSeconds: 3600,
		ClientTimeoutSeconds: 5, LogPrefix: "cfnetworking",
	}
}

func (c *cell) agentConfig() agent.Config {
	wait := agent.DefaultLongPollWaitSeconds
	if c.f.opts.Mode == ModePoll {
		wait = 0
	}
	return agent.Config{
		PollInterval: c.f.opts.PollSeconds, CNIDatastorePath: filepath.Join(c.dir, "container-metadata.json"),
		PolicyServerURL: c.f.internalURL, ClientTimeoutSeconds: 5, LongPollWaitSeconds: &wait,
		OverlayNetwork: overlayNetwork, IPTablesAcceptedUDPLogsPerSec: 100, EnforcementBackend: string(agent.BackendNFTables),
	}
}

// start runs the cell's silk-daemon and agent until stop: start-up
// (lease, VTEP, container metadata on first start), then the pollers.
func (c *cell) start(ctx context.Context) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	logger := c.f.cellLog.Session("cell", lager.Data{"cell": c.index})
	sender, err := metrics.NewSender(nil, "vxlan-policy-agent", 0)
	if err != nil {
		return err
	}
	dcfg := c.daemonConfig(c.f.silkURL, 24, overlayNetwork)
	ctl, err := daemon.NewControllerClient(dcfg, 5*time.Second)
	if err != nil {
		return err
	}
	d, err := daemon.Setup(ctx, logger.Session("silk-daemon"), dcfg, c.sys, ctl, sender, daemon.Options{GCThresh3Path: "-"})
	if err != nil {
		return fmt.Errorf("cell %d: silk-daemon: %w", c.index, err)
	}
	if err := c.writeContainers(ctx, d.Lease.OverlaySubnet); err != nil {
		return err
	}
	acfg := c.agentConfig()
	client := agent.NewClient(acfg.PolicyServerURL, c.f.agentTLS, 5*time.Second)
	client.WrapTransports(func(longPoll bool, rt http.RoundTripper) http.RoundTripper {
		if longPoll {
			return rt
		}
		return timed{rt: rt, rec: c.f.requests}
	})
	cycle := agent.NewPolicyCycle(logger.Session("vxlan-policy-agent"), sender, acfg, client, c.nft)
	members := append(cycle.Members(), lifecycle.Member{Name: "vxlan-poller", Runner: d.Poller()})

	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c.mu.Lock()
	c.cancel, c.done, c.err, c.firstWrite = cancel, done, nil, time.Time{}
	c.mu.Unlock()
	go func() {
		defer close(done)
		defer client.CloseIdleConnections()
		err := lifecycle.RunContext(runCtx, logger, members...)
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
	}()
	return nil
}

// stop ends the cell's daemons (its kernel stays).
func (c *cell) stop() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.cancel = nil
	c.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// writeContainers puts the cell's containers in its metadata store, as
// the CNI plugins would have, on the cell's first start.
func (c *cell) writeContainers(ctx context.Context, subnet string) error {
	c.mu.Lock()
	have := c.ips != nil
	c.mu.Unlock()
	if have {
		return nil
	}
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return err
	}
	store := metadata.New(filepath.Join(c.dir, "container-metadata.json"))
	var ips []string
	err = store.Modify(ctx, func(pool map[string]metadata.Container) bool {
		ip := p.Masked().Addr().Next()
		for slot := 0; ; slot++ {
			a := slot*c.f.opts.Cells + c.index
			if a >= len(c.f.apps) {
				break
			}
			ip = ip.Next()
			app := c.f.apps[a]
			handle := fmt.Sprintf("c%d-%d", c.index, slot)
			pool[handle] = metadata.Container{Handle: handle, IP: ip.String(), Metadata: map[string]any{
				"policy_group_id": app.guid, "space_id": app.space, "ports": "8080", "container_workload": "app",
			}}
			ips = append(ips, ip.String())
		}
		return true
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.ips = ips
	c.mu.Unlock()
	return nil
}

// appIP is the IP of the app's container.
func (f *Fleet) appIP(a int) string {
	c := f.cells[f.apps[a].cell]
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ips[f.apps[a].slot]
}

// watchedNFT is the agent's nft.Fake; after every write it counts the
// c2c policy elements, checks the cell's expectations and that no rule
// below the floor went missing.
type watchedNFT struct {
	*nft.Fake
	cell *cell
}

func (w *watchedNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	if err := w.Fake.Run(ctx, tx); err != nil {
		return err
	}
	w.cell.written()
	return nil
}

// policyElements is the cell's c2c-policies set as "ip port" keys.
func (c *cell) policyElements() map[string]bool {
	s, err := c.nft.ReadSet(context.Background(), c2c.NFTPolicies, false)
	out := map[string]bool{}
	if err != nil || s == nil {
		return out
	}
	for k := range s.Elements {
		// mark . ip . proto . port (or port-port)
		parts := strings.Split(k, " . ")
		if len(parts) != 4 {
			continue
		}
		port, _, _ := strings.Cut(parts[3], "-")
		out[parts[1]+" "+port] = true
	}
	return out
}

func (c *cell) written() {
	els := c.policyElements()
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.elements, c.lastWrite = len(els), now
	if c.firstWrite.IsZero() {
		c.firstWrite = now
	}
	if len(els) < c.floor {
		c.f.rulesLost.add(1)
	}
	c.expects = slices.DeleteFunc(c.expects, func(e *expect) bool {
		if els[e.ip+" "+e.port] != e.present {
			return false
		}
		e.met <- now
		return true
	})
}

// expectRule registers a rule the cell must come to hold (present) or
// drop, counting from since; the channel receives the delay once it does.
func (c *cell) expectRule(ip string, port int, present bool, since time.Time) pending {
	e := &expect{ip: ip, port: strconv.Itoa(port), present: present, since: since, met: make(chan time.Time, 1)}
	c.mu.Lock()
	c.expects = append(c.expects, e)
	c.mu.Unlock()
	return pending{since: since, met: e.met}
}

// pending is a change awaited on a cell.
type pending struct {
	since time.Time
	met   <-chan time.Time
}

func (c *cell) counts() (elements int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.elements, c.err
}

// setFloor makes any later write that leaves fewer than n policy
// elements count as a lost rule.
func (c *cell) setFloor(n int) {
	c.mu.Lock()
	c.floor = n
	c.mu.Unlock()
}

// A cell whose start-up fails is started again after startRetryDelay, up
// to startAttempts times in all.
const (
	startAttempts   = 5
	startRetryDelay = 2 * time.Second
)

// startCells starts cells, 50 at a time (a fleet's max_in_flight).
func (f *Fleet) startCells(ctx context.Context, cells []*cell) error {
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, c := range cells {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// A failed start-up (the lease acquire timed out on a busy
			// machine) is retried as monit restarts the daemon.
			var err error
			for attempt := range startAttempts {
				if attempt > 0 {
					f.startRetries.add(1)
					if !lifecycle.Sleep(ctx, startRetryDelay) {
						break
					}
				}
				if err = c.start(ctx); err == nil {
					break
				}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitConverged waits until every cell holds its share of the seeded
// policies (plus extra[cell]).
func (f *Fleet) waitConverged(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		behind := 0
		var failed error
		for i, c := range f.cells {
			n, err := c.counts()
			if err != nil && failed == nil {
				failed = fmt.Errorf("cell %d: %w", i, err)
			}
			if n != f.policyCountByCell[i] {
				behind++
			}
		}
		if failed != nil {
			return failed
		}
		if behind == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d cells have not enforced their policies after %s", behind, len(f.cells), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// timed records how long each plain request to policy-server-internal took.
type timed struct {
	rt  http.RoundTripper
	rec *recorder
}

func (t timed) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.rt.RoundTrip(r)
	t.rec.add(time.Since(start), err != nil || (resp != nil && resp.StatusCode >= 500))
	return resp, err
}

// recorder collects durations.
type recorder struct {
	mu     sync.Mutex
	d      []time.Duration
	failed int
}

func newRecorder() *recorder { return &recorder{} }

func (r *recorder) add(d time.Duration, failed bool) {
	r.mu.Lock()
	r.d = append(r.d, d)
	if failed {
		r.failed++
	}
	r.mu.Unlock()
}

// take returns what was recorded and starts afresh.
func (r *recorder) take() ([]time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, f := r.d, r.failed
	r.d, r.failed = nil, 0
	return d, f
}

type atomicCounter struct{ n atomic.Int64 }

func (a *atomicCounter) add(n int64) { a.n.Add(n) }
func (a *atomicCounter) load() int64 { return a.n.Load() }

type lagerLogger = lager.Logger

func newDiscardLogger() lager.Logger { return lager.NewLogger("fleet") }
