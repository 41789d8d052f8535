// Package lifecycle is the process edge shared by every netman daemon: Main
// runs a binary's Command (flags, config errors, logger, signals), and
// RunContext runs an ordered group of ifrit members until the context ends
// or a member fails. It also provides the runners and handlers the daemons
// have in common (HTTP servers, the debug handler, pollers, the metrics
// emitter, request middleware). ifrit appears only here.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
)

// ErrMemberExited is returned (wrapped with the member's name) when a member
// stops on its own without an error: a daemon whose server or poller has
// quietly gone away must not keep running half-alive, nor exit 0.
var ErrMemberExited = errors.New("exited unexpectedly")

// Member is one named runner of a daemon, e.g. {"debug-server", ...}.
type Member struct {
	Name   string
	Runner ifrit.Runner
}

// RunContext starts members in order, each only after the previous one has
// signalled ready, then waits until ctx is done or any member exits. It then
// stops the running members in reverse order, waiting for each to exit before
// signalling the next, and returns the first member error (wrapped with the
// member's name), or nil when stopped by ctx with every member exiting
// cleanly. With no members there is nothing to run and it returns nil at once.
//
// The group logs each member's start, readiness and exit at debug level as
// "member-starting", "member-ready" and "member-exited" (data: "member"),
// names upstream never uses: upstream's daemons log their own lifecycle
// ("starting", "running", "exited", ...) once, without member data, and
// operators' alerts key on those. A member failing after the first failure
// is logged as "member-exited-with-failure" (only the first is returned).
func RunContext(ctx context.Context, logger lager.Logger, members ...Member) error {
	for i, m := range members {
		if m.Runner == nil {
			return fmt.Errorf("daemon: member %d (%q) has no runner", i, m.Name)
		}
	}
	if len(members) == 0 {
		return nil
	}
	g := &group{
		logger:  logger,
		members: members,
		exits:   make(chan exit, len(members)),
	}
	g.start(ctx)
	g.stop()
	return g.err
}

type exit struct {
	idx int
	err error
}

type group struct {
	logger  lager.Logger
	members []Member
	procs   []ifrit.Process
	exited  []bool
	exits   chan exit
	err     error
}

// start returns once ctx is done or a member has exited.
func (g *group) start(ctx context.Context) {
	for i, m := range g.members {
		g.logger.Debug("member-starting", lager.Data{"member": m.Name})
		p := ifrit.Background(m.Runner)
		g.procs = append(g.procs, p)
		g.exited = append(g.exited, false)
		go func() { g.exits <- exit{idx: i, err: <-p.Wait()} }()

		select {
		case <-p.Ready():
			g.logger.Debug("member-ready", lager.Data{"member": m.Name})
		case e := <-g.exits:
			g.record(e, false)
			return
		case <-ctx.Done():
			return
		}
	}
	select {
	case e := <-g.exits:
		g.record(e, false)
	case <-ctx.Done():
	}
}

func (g *group) stop() {
	for i := len(g.procs) - 1; i >= 0; i-- {
		if g.exited[i] {
			continue
		}
		g.procs[i].Signal(os.Interrupt)
		// Other members may exit meanwhile; record them as they come.
		for !g.exited[i] {
			g.record(<-g.exits, true)
		}
	}
}

func (g *group) record(e exit, stopping bool) {
	g.exited[e.idx] = true
	name := g.members[e.idx].Name
	data := lager.Data{"member": name}
	err := e.err
	if err == nil && !stopping {
		err = ErrMemberExited
	}
	switch {
	case err == nil:
		g.logger.Debug("member-exited", data)
	case g.err == nil:
		// Returned to the caller, who reports it; not logged twice.
		g.err = fmt.Errorf("%s: %w", name, err)
		g.logger.Debug("member-exited", data)
	default:
		// Only the first failure is returned; later ones would be lost.
		g.logger.Error("member-exited-with-failure", err, data)
	}
}

// OnReady returns a runner for the last member of a group: it calls fn once
// (every member before it is then ready, since the group starts members in
// order), signals ready and waits for the stop signal. Daemons use it to log
// upstream's "running" or "starting" line at the moment upstream's
// ifrit.Invoke returned.
func OnReady(fn func()) ifrit.Runner {
	return ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		fn()
		close(ready)
		<-signals
		return nil
	})
}
