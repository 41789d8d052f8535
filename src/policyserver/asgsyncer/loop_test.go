package asgsyncer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policyserver/asgsyncer"
	"github.com/netman-release/netman/src/standin/cc"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// TestLoopLogsAndRetriesFailures runs the syncer's loop as Run does while
// Cloud Controller is down, answers garbage or pages inconsistently: each
// failed cycle is logged as upstream's poller does ("asg-syncer.poll-cycle"
// with the error) and counted, the table keeps its last good state, and
// the next cycle retries, catching up once Cloud Controller is healthy.
func TestLoopLogsAndRetriesFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		break_  func(srv *cc.Server)
		heal    func(srv *cc.Server)
		wantErr string
	}{
		{
			name:    "Cloud Controller down",
			break_:  func(srv *cc.Server) { srv.SetFailure(cc.List, cc.Outage) },
			heal:    func(srv *cc.Server) { srv.SetFailure(cc.List, cc.Healthy) },
			wantErr: "status 503",
		},
		{
			name:    "garbage marker",
			break_:  func(srv *cc.Server) { srv.SetFailure(cc.LatestUpdate, cc.Garbage) },
			heal:    func(srv *cc.Server) { srv.SetFailure(cc.LatestUpdate, cc.Healthy) },
			wantErr: "unmarshal json",
		},
		{
			name: "inconsistent paging",
			break_: func(srv *cc.Server) {
				srv.SetPageLimit(1)
				n := 0
				srv.OnPage(func(int) { n++; srv.Put(cc.SecurityGroup{GUID: fmt.Sprintf("asg-busy-%d", n), Name: "busy"}) })
			},
			heal:    func(srv *cc.Server) { srv.OnPage(nil) },
			wantErr: "unstable security group list",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSyncEnv(t, 5*time.Second)
			e.cc.Put(publicNetworks())
			log, capture := logtest.NewCapture(t, "cfnetworking.policy-server-asg-syncer")
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			done := make(chan error, 1)
			go func() { done <- e.syncer.Loop(ctx, log.Session("asg-syncer"), 20*time.Millisecond) }()
			waitUntil(t, "the first sync", func() bool { return len(table(t, e.db)) == 1 })
			before := table(t, e.db)

			tc.break_(e.cc)
			e.cc.Put(cc.SecurityGroup{GUID: "asg-new", Name: "new"})
			const line = "cfnetworking.policy-server-asg-syncer.asg-syncer.poll-cycle"
			waitUntil(t, "three failed cycles", func() bool {
				return len(capture.Find(line)) >= 3 && e.rec.counter(asgsyncer.MetricSyncError) >= 3
			})
			if diff := cmp.Diff(before, table(t, e.db)); diff != "" {
				t.Errorf("failed cycles changed the table (-before +after):\n%s", diff)
			}
			for _, l := range capture.Find(line) {
				msg, _ := l.Data["error"].(string)
				if l.Level != "error" || !strings.Contains(msg, tc.wantErr) || len(l.Data) != 2 || l.Data["session"] == nil {
					t.Errorf("poll-cycle line %+v, want an error line with {error: ...%s..., session}", l, tc.wantErr)
				}
			}

			tc.heal(e.cc)
			waitUntil(t, "the retry to catch up", func() bool { return slices.Contains(guids(table(t, e.db)), "asg-new") })
			stop()
			if err := <-done; err != nil {
				t.Fatalf("Loop = %v, want nil after stop", err)
			}
		})
	}
}
