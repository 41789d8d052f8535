package asgsyncer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/asgsyncer"
	"github.com/netman-release/netman/src/standin/cc"
)

func publicNetworks() cc.SecurityGroup {
	return cc.SecurityGroup{
		GUID: "asg-public", Name: "public_networks", RunningDefault: true, StagingDefault: true,
		Rules: []cc.Rule{{Protocol: "all", Destination: "0.0.0.0-9.255.255.255"}},
	}
}

func TestSyncCopiesEveryGroupAcrossPages(t *testing.T) {
	e := newSyncEnv(t, 5*time.Second)
	e.cc.SetPageLimit(3)
	e.cc.Put(publicNetworks())
	e.cc.Put(cc.SecurityGroup{
		GUID: "asg-icmp", Name: "ping",
		// Dual-stack rules (CC accepts IPv6 destinations and icmpv6)
		// are copied as they come, as every other rule.
		Rules: []cc.Rule{{Protocol: "icmp", Destination: "10.0.0.0/8", Type: ptr(8), Code: ptr(0), Description: "echo", Log: true},
			{Protocol: "icmpv6", Destination: "::/0", Type: ptr(128), Code: ptr(0)},
			{Protocol: "tcp", Destination: "2001:db8::1-2001:db8::9,10.0.0.1", Ports: "443"}},
		RunningSpaces: []string{"space-a", "space-b"}, StagingSpaces: []string{"space-c"},
	})
	for i := range 5 {
		e.cc.Put(cc.SecurityGroup{
			GUID: fmt.Sprintf("asg-%d", i), Name: fmt.Sprintf("tcp-%d", i),
			Rules:         []cc.Rule{{Protocol: "tcp", Destination: "10.1.0.0/16", Ports: "443,8080-8090"}},
			RunningSpaces: []string{"space-a"},
		})
	}

	if err := e.syncer.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []policy.SecurityGroup{}
	for i := range 5 {
		want = append(want, policy.SecurityGroup{
			GUID: fmt.Sprintf("asg-%d", i), Name: fmt.Sprintf("tcp-%d", i),
			Rules:             `[{"protocol":"tcp","destination":"10.1.0.0/16","ports":"443,8080-8090","type":0,"code":0,"description":"","log":false}]`,
			StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: []string{"space-a"},
		})
	}
	want = append(want,
		policy.SecurityGroup{
			GUID: "asg-icmp", Name: "ping",
			Rules: `[{"protocol":"icmp","destination":"10.0.0.0/8","ports":"","type":8,"code":0,"description":"echo","log":true},` +
				`{"protocol":"icmpv6","destination":"::/0","ports":"","type":128,"code":0,"description":"","log":false},` +
				`{"protocol":"tcp","destination":"2001:db8::1-2001:db8::9,10.0.0.1","ports":"443","type":0,"code":0,"description":"","log":false}]`,
			StagingSpaceGUIDs: []string{"space-c"}, RunningSpaceGUIDs: []string{"space-a", "space-b"},
		},
		policy.SecurityGroup{
			GUID: "asg-public", Name: "public_networks", StagingDefault: true, RunningDefault: true,
			Rules:             `[{"protocol":"all","destination":"0.0.0.0-9.255.255.255","ports":"","type":0,"code":0,"description":"","log":false}]`,
			StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: []string{},
		})
	if diff := cmp.Diff(want, table(t, e.db)); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	if got := e.cc.Requests(cc.List); got != 3 {
		t.Errorf("listing took %d page requests, want 3 (7 groups, 3 per page)", got)
	}
	for _, m := range []string{asgsyncer.MetricRetrievalTime, asgsyncer.MetricTotalSyncTime} {
		if !e.rec.has(m) {
			t.Errorf("metric %s not sent", m)
		}
	}
}

func TestSkipsWhileMarkerStandsStill(t *testing.T) {
	e := newSyncEnv(t, 5*time.Second)
	ctx := context.Background()
	e.cc.Put(publicNetworks())
	if err := e.syncer.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	lists := e.cc.Requests(cc.List)

	// A v2 change does not move asg_latest_update: the syncer skips, as
	// upstream, and picks the change up with the next v3 change.
	e.cc.PutV2(cc.SecurityGroup{GUID: "asg-v2", Name: "legacy"})
	if err := e.syncer.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.cc.Requests(cc.List); got != lists {
		t.Fatalf("unchanged marker: listed again (%d list requests, want %d)", got, lists)
	}
	if got := guids(table(t, e.db)); !cmp.Equal(got, []string{"asg-public"}) {
		t.Fatalf("table changed without a marker change: %v", got)
	}

	e.cc.Put(cc.SecurityGroup{GUID: "asg-v3", Name: "new"})
	if err := e.syncer.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"asg-public", "asg-v2", "asg-v3"}, guids(table(t, e.db))); diff != "" {
		t.Errorf("after a v3 change (-want +got):\n%s", diff)
	}

	// Deleting the last groups is a real, consistent listing of none.
	for _, g := range []string{"asg-public", "asg-v2", "asg-v3"} {
		e.cc.Delete(g)
	}
	if err := e.syncer.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := table(t, e.db); len(got) != 0 {
		t.Errorf("Cloud Controller has no security groups, table has %v", guids(got))
	}
}

func guids(gs []policy.SecurityGroup) []string {
	out := []string{}
	for _, g := range gs {
		out = append(out, g.GUID)
	}
	return out
}

// TestFailuresLeaveTheTable: whatever goes wrong reading Cloud Controller,
// the table keeps the last good state, the failure is counted, and the
// next cycle (once Cloud Controller is healthy) catches up.
func TestFailuresLeaveTheTable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		endpoint cc.Endpoint
		failure  cc.Failure
		wantErr  string
	}{
		{"listing outage", cc.List, cc.Outage, "status 503"},
		{"listing garbage", cc.List, cc.Garbage, "unmarshal json"},
		{"listing without pagination", cc.List, cc.EmptyObject, "no pagination.total_results"},
		{"listing too slow", cc.List, cc.Slow, "Client.Timeout exceeded"},
		{"marker outage", cc.LatestUpdate, cc.Outage, "status 503"},
		{"marker garbage", cc.LatestUpdate, cc.Garbage, "unmarshal json"},
		{"marker missing", cc.LatestUpdate, cc.EmptyObject, "failed parsing last_update from cloud controller"},
		{"marker too slow", cc.LatestUpdate, cc.Slow, "Client.Timeout exceeded"},
		{"uaa outage", cc.Token, cc.Outage, "get uaa token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSyncEnv(t, 300*time.Millisecond)
			ctx := context.Background()
			e.cc.Put(publicNetworks())
			if err := e.syncer.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			before := table(t, e.db)
			if tc.endpoint == cc.Token {
				// The token is cached; a fresh syncer must fetch one.
				client, tokens := e.clients(t, 300*time.Millisecond)
				e.syncer = asgsyncer.NewSyncer(logger(t), tokens, client, e.store, e.rec, time.Hour)
			}
			e.cc.Put(cc.SecurityGroup{GUID: "asg-new", Name: "new"})
			e.cc.SetDelay(3 * time.Second)
			e.cc.SetFailure(tc.endpoint, tc.failure)

			err := e.syncer.Poll(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Poll error = %v, want one containing %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(before, table(t, e.db)); diff != "" {
				t.Errorf("failed cycle changed the table (-before +after):\n%s", diff)
			}
			if got := e.rec.counter(asgsyncer.MetricSyncError); got != 1 {
				t.Errorf("%s = %d, want 1", asgsyncer.MetricSyncError, got)
			}

			e.cc.SetFailure(tc.endpoint, cc.Healthy)
			if err := e.syncer.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"asg-new", "asg-public"}, guids(table(t, e.db))); diff != "" {
				t.Errorf("after recovery (-want +got):\n%s", diff)
			}
		})
	}
}

// TestInconsistentPaging: a listing that changes under the reader is
// thrown away; within three attempts a stable one is used, otherwise the
// cycle fails with upstream's message and the table stays.
func TestInconsistentPaging(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change runs after each page served, with the attempt's number of
		// pages served so far.
		change  func(srv *cc.Server, served int)
		wantErr string
		want    []string
	}{
		{
			name: "v3 change during the first listing only",
			change: func(srv *cc.Server, served int) {
				once(served == 1, func() { srv.Put(cc.SecurityGroup{GUID: "asg-late", Name: "late"}) })
			},
			want: []string{"asg-0", "asg-1", "asg-2", "asg-3", "asg-late"},
		},
		{
			name: "v2 change (marker still) shifts the pages",
			change: func(srv *cc.Server, served int) {
				once(served == 1, func() { srv.PutV2(cc.SecurityGroup{GUID: "asg-v2", Name: "v2"}) })
			},
			want: []string{"asg-0", "asg-1", "asg-2", "asg-3", "asg-v2"},
		},
		{
			name: "Cloud Controller never stands still",
			change: func(srv *cc.Server, served int) {
				srv.Put(cc.SecurityGroup{GUID: fmt.Sprintf("asg-busy-%d", served), Name: "busy"})
			},
			wantErr: "Ran out of retry attempts. Last error was: unstable security group list: last_update time has changed",
			want:    []string{"asg-0", "asg-1", "asg-2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSyncEnv(t, 5*time.Second)
			ctx := context.Background()
			for i := range 3 {
				e.cc.Put(cc.SecurityGroup{GUID: fmt.Sprintf("asg-%d", i), Name: "g"})
			}
			if err := e.syncer.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			e.cc.Put(cc.SecurityGroup{GUID: "asg-3", Name: "g"})
			e.cc.SetPageLimit(2)
			served := 0
			e.cc.OnPage(func(int) { served++; tc.change(e.cc, served) })

			err := e.syncer.Poll(ctx)
			e.cc.OnPage(nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, asgsyncer.ErrUnstableList) {
					t.Fatalf("Poll error = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, guids(table(t, e.db))); diff != "" {
				t.Errorf("table (-want +got):\n%s", diff)
			}
		})
	}
}

func once(cond bool, fn func()) {
	if cond {
		fn()
	}
}

// TestUnstableBeyondRetryDeadline: unstable listings are tolerated
// quietly-but-counted until retry_deadline_seconds after the last sync,
// then reported with upstream's message.
func TestUnstableBeyondRetryDeadline(t *testing.T) {
	env := startCC(t)
	st, db := newStore(t, sqliteConfig(t))
	client, tokens := env.clients(t, 5*time.Second)
	s := asgsyncer.NewSyncer(logger(t), tokens, client, st, newRecorder(), time.Nanosecond)
	env.cc.Put(publicNetworks())
	env.cc.OnPage(func(int) { env.cc.Put(cc.SecurityGroup{GUID: "asg-busy", Name: "busy"}) })
	err := s.Poll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "unable to retrieve a consistent listing of security groups from CAPI after '1ns'") {
		t.Fatalf("Poll error = %v", err)
	}
	if got := table(t, db); len(got) != 0 {
		t.Errorf("table = %v, want untouched (empty)", guids(got))
	}
}

// failingStore fails its first n Replaces.
type failingStore struct {
	asgsyncer.Store
	n int
}

func (f *failingStore) ReplaceSecurityGroups(ctx context.Context, groups []policy.SecurityGroup) error {
	if f.n > 0 {
		f.n--
		return errors.New("database is down")
	}
	return f.Store.ReplaceSecurityGroups(ctx, groups)
}

// TestFailedWriteIsRetriedWithoutNewChange: upstream remembered the marker
// before writing, so a failed write waited for the next Cloud Controller
// change; netman retries it next cycle.
func TestFailedWriteIsRetriedWithoutNewChange(t *testing.T) {
	env := startCC(t)
	st, db := newStore(t, sqliteConfig(t))
	client, tokens := env.clients(t, 5*time.Second)
	rec := newRecorder()
	s := asgsyncer.NewSyncer(logger(t), tokens, client, &failingStore{Store: st, n: 1}, rec, time.Hour)
	env.cc.Put(publicNetworks())
	if err := s.Poll(context.Background()); err == nil || !strings.Contains(err.Error(), "database is down") {
		t.Fatalf("Poll error = %v", err)
	}
	if err := s.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"asg-public"}, guids(table(t, db))); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	if got := rec.counter(asgsyncer.MetricSyncError); got != 1 {
		t.Errorf("%s = %d, want 1", asgsyncer.MetricSyncError, got)
	}
}

func TestConvertRejectsRelationshipWithoutGUID(t *testing.T) {
	for _, kind := range []string{"staging", "running"} {
		var g asgsyncer.CCSecurityGroup
		g.GUID = "asg-1"
		bad := []map[string]string{{"name": "no guid"}}
		if kind == "staging" {
			g.Relationships.StagingSpaces.Data = bad
		} else {
			g.Relationships.RunningSpaces.Data = bad
		}
		_, err := asgsyncer.Convert([]asgsyncer.CCSecurityGroup{g})
		want := fmt.Sprintf("no 'guid' found for %s-space-relationship on asg 'asg-1'", kind)
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", kind, err, want)
		}
	}
}
