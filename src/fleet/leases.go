package fleet

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/silk/daemon"
	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/sqldb"
)

// timedController times the lease poll's two calls.
type timedController struct {
	*controller.Client
	renew, list *recorder
}

func (t timedController) Renew(ctx context.Context, l lease.Lease) error {
	start := time.Now()
	err := t.Client.Renew(ctx, l)
	t.renew.add(time.Since(start), err != nil)
	return err
}

func (t timedController) RoutableLeases(ctx context.Context) ([]lease.Lease, error) {
	start := time.Now()
	ls, err := t.Client.RoutableLeases(ctx)
	t.list.add(time.Since(start), err != nil)
	return ls, err
}

// leases is scenario 5: a silk-controller of its own on 10.0.0.0/11 with
// /22 subnets (2,047 leases), and that many cells running silk-daemon's
// start-up and lease poll, every one renewing each lease_poll_interval.
func (f *Fleet) leases(ctx context.Context) (*Leases, error) {
	if f.certs.ca == "" {
		if err := f.makeCerts(); err != nil {
			return nil, err
		}
	}
	db := sqldb.Config{Type: sqldb.TypeSQLite, DatabaseName: filepath.Join(f.opts.Dir, "silk-leases.db"), Timeout: 10}
	removeDB(db.DatabaseName)
	srv, err := f.newSilkController("silk-controller-leases", db, "10.0.0.0/11", 22)
	if err != nil {
		return nil, err
	}
	if err := srv.start(ctx); err != nil {
		return nil, err
	}
	defer srv.stop()
	url := "https://127.0.0.1:" + srv.listen

	n := f.opts.Leases
	renew, list := newRecorder(), newRecorder()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	cells := make([]*cell, n)
	links := make([]int, n)
	sem := make(chan struct{}, 50)
	var errMu sync.Mutex
	var startErr error
	t0 := time.Now()
	// up is done once a cell has started (links[i] written) or failed:
	// the convergence check below reads links only after it.
	var up sync.WaitGroup
	for i := range cells {
		c := newCell(f, i)
		cells[i] = c
		sem <- struct{}{}
		wg.Add(1)
		up.Add(1)
		go func() {
			defer wg.Done()
			cfg := c.daemonConfig(url, 22, "10.0.0.0/11")
			client, err := daemon.NewControllerClient(cfg, 5*time.Second)
			var d *daemon.Daemon
			if err == nil {
				sender, _ := metrics.NewSender(nil, "silk-daemon", 0)
				d, err = daemon.Setup(runCtx, f.cellLogger().Session("silk-daemon"), cfg, c.sys, timedController{client, renew, list}, sender, daemon.Options{GCThresh3Path: "-"})
			}
			<-sem
			if err != nil {
				errMu.Lock()
				startErr = fmt.Errorf("cell %d: %w", i, err)
				errMu.Unlock()
				up.Done()
				return
			}
			vtep, _ := daemon.ReadVTEP(c.sys, "silk-vtep")
			links[i] = vtep.Index
			up.Done()
			_ = lifecycle.RunContext(runCtx, f.cellLogger(), lifecycle.Member{Name: "vxlan-poller", Runner: d.Poller()})
		}()
	}
	// Wait for every start-up, then for every cell to hold every route.
	up.Wait()
	converged := func() int {
		k := 0
		for i, c := range cells {
			if r, _, _ := c.sys.Counts(links[i]); r == n {
				k++
			}
		}
		return k
	}
	deadline := time.Now().Add(time.Duration(3*f.opts.LeasePollSeconds)*time.Second + 5*time.Minute)
	for converged() < n && time.Now().Before(deadline) {
		errMu.Lock()
		err := startErr
		errMu.Unlock()
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Second)
	}
	started := time.Since(t0)
	f.logf("%d lease cells up in %s", n, started.Round(time.Millisecond))
	renew.take()
	list.take()
	before, err := srv.usage()
	if err != nil {
		return nil, err
	}
	window := time.Duration(2*f.opts.LeasePollSeconds) * time.Second
	w0 := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(window):
	}
	u, err := usageOver(srv, time.Since(w0), before)
	if err != nil {
		return nil, err
	}
	rd, rf := renew.take()
	ld, lf := list.take()
	out := &Leases{
		Cells: n, StartedIn: secs(started), Renew: dist(rd), List: dist(ld), Failed: rf + lf,
		Converged: converged(), Controller: u, Window: secs(time.Since(w0)),
	}
	cancel()
	return out, nil
}

func (f *Fleet) cellLogger() lagerLogger {
	if f.cellLog == nil {
		f.cellLog = newDiscardLogger()
	}
	return f.cellLog
}
