package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
)

// The ASG act of the demo: the frontend's egress caller is denied the
// outside service; a security group bound to the frontend's space lets it
// out; removing the group shuts it in again. Each change is timed from the
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

// newASGChanger returns the lab's way of changing security groups: a
// direct write of the policy database's security_groups table, exactly
// what policy-server-asg-syncer commits after reading Cloud Controller.
func newASGChanger(ctx context.Context, st *State) (asgChanger, error) {
	return openStoreASGs(ctx, st.Plan.PolicyDB)
}

// storeASGs writes the security_groups table.
type storeASGs struct {
	db *sqldb.DB
	st *store.Store
}

func openStoreASGs(ctx context.Context, cfg map[string]any) (*storeASGs, error) {
	var c sqldb.Config
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	db, err := sqldb.Open(ctx, lager.NewLogger("netman-lab"), c, sqldb.Pool{MaxOpenConnections: 2, MaxIdleConnections: 1})
	if err != nil {
		return nil, fmt.Errorf("opening the policy database: %w", err)
	}
	return &storeASGs{db: db, st: store.New(db, 2, nil)}, nil
}

// labASG is the demo's security group.
func labASG(space, service string) policy.SecurityGroup {
	ip, port, _ := strings.Cut(service, ":")
	return policy.SecurityGroup{
		GUID: "lab-outside-service", Name: "outside-service",
		Rules:             fmt.Sprintf(`[{"protocol":"tcp","destination":"%s","ports":"%s","description":"the lab's outside service"}]`, ip, port),
		StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: []string{space},
	}
}

func (s *storeASGs) Bind(ctx context.Context, space, service string) (time.Time, error) {
	err := s.st.ReplaceSecurityGroups(ctx, []policy.SecurityGroup{labASG(space, service)})
	return time.Now(), err
}

func (s *storeASGs) Unbind(ctx context.Context) (time.Time, error) {
	err := s.st.ReplaceSecurityGroups(ctx, nil)
	return time.Now(), err
}

func (s *storeASGs) Action(bind bool, space, service string) string {
	if bind {
		return fmt.Sprintf("security_groups ← outside-service (tcp %s, running space %s), as the ASG syncer writes it", service, shortGUID(space))
	}
	return "security_groups ← (none), as the ASG syncer writes it"
}

func (s *storeASGs) Since() string { return "the write's commit" }

func (s *storeASGs) Close() error { return s.db.Close() }

func shortGUID(g string) string {
	if len(g) > 8 {
		return g[:8] + "…"
	}
	return g
}

// asgSteps acts out the ASG part of the demo.
func (r *Report) asgSteps(ctx context.Context, st *State, asgs asgChanger, log io.Writer) error {
	e, fe := st.Egress, st.App("frontend")
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
	c, err := waitCall(ctx, e.Log, e.UpAt, time.Now().Add(DemoTimeout), func(c Call) bool { return !c.Allowed })
	if err != nil {
		return fmt.Errorf("the frontend's egress caller: %w", err)
	}
	r.Steps = append(r.Steps, Step{Title: "no ASG", Allowed: false, Detail: c.Detail})
	label()

	// 5. A group bound to the frontend's space opens it.
	fmt.Fprintf(log, "==> demo: bind a security group for %s to the frontend's space\n", e.Service)
	sent := time.Now()
	accepted, err := asgs.Bind(ctx, fe.Space, e.Service)
	if err != nil {
		return err
	}
	err = r.change(ctx, e.Log, "ASG bound", asgs.Action(true, fe.Space, e.Service), true, sent, accepted)
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
	err = r.change(ctx, e.Log, "ASG removed", asgs.Action(false, fe.Space, e.Service), false, sent, accepted)
	label()
	return err
}
