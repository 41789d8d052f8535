package storetest

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
)

// Contents is everything a policy server reads from a database.
type Contents struct {
	Policies       []policy.Policy
	Tags           []policy.Tag
	SecurityGroups []policy.SecurityGroup
	// SecurityGroupGUIDs is every row of security_groups, those no space
	// reads (neither bound nor globally enabled) included.
	SecurityGroupGUIDs []string
	LastUpdated        int64
}

// spaces are the spaces Populate binds security groups to.
var spaces = []string{"space-1", "space-2", "space-3", "space-4"}

// Populate writes 40 policies between 15 apps, two tags of other types
// and five security groups (globally enabled, bound to spaces, and one
// bound nowhere).
func Populate(t testing.TB, s *store.Store) {
	t.Helper()
	ctx := context.Background()
	var ps []policy.Policy
	for i := range 40 {
		proto := []string{policy.ProtocolTCP, policy.ProtocolUDP}[i%2]
		start := 8000 + i
		end := start + (i%3)*10
		ps = append(ps, policy.NewPolicy(fmt.Sprintf("app-%02d", i%12), fmt.Sprintf("app-%02d", (i*7+1)%15), proto, start, end))
	}
	if err := s.Create(ctx, ps); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []struct{ id, typ string }{{"INGRESS_ROUTER", "router"}, {"some-external-group", "external"}} {
		if _, err := s.CreateTag(ctx, tag.id, tag.typ); err != nil {
			t.Fatal(err)
		}
	}
	rules := `[{"protocol":"tcp","destination":"10.0.11.0/24","ports":"80,443","type":0,"code":0,"description":"web","log":true}]`
	groups := []policy.SecurityGroup{
		{GUID: "asg-1", Name: "public", Rules: rules, StagingDefault: true, RunningDefault: true, StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: []string{}},
		{GUID: "asg-2", Name: "dns", Rules: `[{"protocol":"udp","destination":"0.0.0.0/0","ports":"53"}]`, RunningDefault: true, StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: []string{"space-1"}},
		{GUID: "asg-3", Name: "database ☃", Rules: `[]`, StagingSpaceGUIDs: []string{"space-2", "space-3"}, RunningSpaceGUIDs: []string{"space-3"}},
		{GUID: "asg-4", Name: "icmp", Rules: `[{"protocol":"icmp","destination":"10.0.0.0/8","type":8,"code":0}]`, StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: []string{"space-4"}},
		// Cloud Controller keeps groups bound nowhere; so does the table.
		{GUID: "asg-5", Name: "unbound", Rules: `[]`, StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: []string{}},
	}
	if err := s.ReplaceSecurityGroups(ctx, groups); err != nil {
		t.Fatal(err)
	}
}

// Read reads every policy, tag and security group and the policies' change
// stamp; policies in a stable order.
func Read(t testing.TB, s *store.Store) Contents {
	t.Helper()
	ctx := context.Background()
	var c Contents
	var err error
	if c.Policies, err = s.All(ctx); err != nil {
		t.Fatal(err)
	}
	sort.Slice(c.Policies, func(i, j int) bool {
		return fmt.Sprint(c.Policies[i]) < fmt.Sprint(c.Policies[j])
	})
	if c.Tags, err = s.Tags(ctx); err != nil {
		t.Fatal(err)
	}
	if c.SecurityGroups, _, err = s.SecurityGroupsBySpaceGuids(ctx, spaces, store.Page{}); err != nil {
		t.Fatal(err)
	}
	if err = s.DB().SelectContext(ctx, &c.SecurityGroupGUIDs, `SELECT guid FROM security_groups ORDER BY guid`); err != nil {
		t.Fatal(err)
	}
	if c.LastUpdated, err = s.LastUpdated(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// OpenStore opens a store (tag length 2) on the database of c, closed when
// the test ends.
func OpenStore(tb testing.TB, c sqldb.Config) *store.Store {
	tb.Helper()
	db, err := sqldb.Open(context.Background(), lager.NewLogger("test"), c, sqldb.Pool{MaxOpenConnections: 4, MaxIdleConnections: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return store.New(db, 2, nil)
}
