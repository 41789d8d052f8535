package lab

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/netman-release/netman/src/standin/app"
	"github.com/netman-release/netman/src/standin/cc"
)

// The ASG act of the demo: the frontend's egress caller is denied the
// outside service; a security group created in Cloud Controller and bound
// to the frontend's space lets it out; deleting the group shuts it in
// again. Each change is timed from the
// moment it was accepted to the caller's first call with the new outcome.

// asgChanger makes the security group changes of the demo.
type asgChanger interface {
	// Bind makes one security group allowing tcp to service (ip:port)
	// bound (running) to space, and returns when that was accepted.
	Bind(ctx context.Context, space, service string) (time.Time, error)
	// Unbind removes it again.
	Unbind(ctx context.Context) (time.Time, error)
	// Action describes Bind and Unbind for the report; Since what their
	// times are.
	Action(bind bool, space, service string) string
	Since() string
	Close() error
}

// newASGChanger returns the lab's way of changing security groups: its
// Cloud Controller, which policy-server-asg-syncer polls.
func newASGChanger(_ context.Context, st *State) (asgChanger, error) {
	return ccASGs{admin: cc.Admin{Addr: st.Plan.CCAdminAddr()}}, nil
}

func shortGUID(g string) string {
	if len(g) > 8 {
		return g[:8] + "…"
	}
	return g
}

// asgSteps acts out the ASG part of the demo.
func (r *Report) asgSteps(ctx context.Context, e *EgressState, space string, asgs asgChanger, log io.Writer) error {
	from, to := "frontend", "outside "+e.Service
	label := func() {
		s := &r.Steps[len(r.Steps)-1]
		s.From, s.To = from, to
		if s.Action != "" {
			s.Since = asgs.Since()
		}
	}

	// 4. No group: a denied call.
	fmt.Fprintf(log, "==> demo: %s calls %s with no security group\n", from, e.Calls)
	c, err := app.WaitCall(ctx, e.Log, e.UpAt, time.Now().Add(DemoTimeout), func(c app.Call) bool { return !c.Allowed })
	if err != nil {
		return fmt.Errorf("the frontend's egress caller: %w", err)
	}
	r.Steps = append(r.Steps, Step{Title: "no ASG", Allowed: false, Detail: c.Detail})
	label()

	// 5. A group bound to the frontend's space opens it.
	fmt.Fprintf(log, "==> demo: bind a security group for %s to the frontend's space\n", e.Service)
	sent := time.Now()
	accepted, err := asgs.Bind(ctx, space, e.Service)
	if err != nil {
		return err
	}
	err = r.change(ctx, e.Log, "ASG bound", asgs.Action(true, space, e.Service), true, sent, accepted)
	label()
	if err != nil {
		return err
	}

	// 6. Removing it closes it again.
	fmt.Fprintf(log, "==> demo: remove the security group\n")
	sent = time.Now()
	if accepted, err = asgs.Unbind(ctx); err != nil {
		return err
	}
	err = r.change(ctx, e.Log, "ASG removed", asgs.Action(false, space, e.Service), false, sent, accepted)
	label()
	return err
}
