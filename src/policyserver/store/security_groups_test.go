package store_test

import (
	"context"
	"strconv"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

const rules = `[{"protocol":"tcp","destination":"10.0.11.0/24","ports":"80,443","type":0,"code":0,"description":"web","log":true}]`

func TestSecurityGroups(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		s := newStore(t, dbType, 2)
		sg := func(guid string, staging, running bool, stagingSpaces, runningSpaces []string) policy.SecurityGroup {
			if stagingSpaces == nil {
				stagingSpaces = []string{}
			}
			if runningSpaces == nil {
				runningSpaces = []string{}
			}
			return policy.SecurityGroup{GUID: guid, Name: guid + "-name", Rules: rules, StagingDefault: staging, RunningDefault: running,
				StagingSpaceGUIDs: stagingSpaces, RunningSpaceGUIDs: runningSpaces}
		}
		g1 := sg("g1", true, false, nil, nil)
		g2 := sg("g2", false, true, nil, []string{"s9"})
		g3 := sg("g3", false, false, []string{"s1", "s2"}, nil)
		g4 := sg("g4", false, false, nil, []string{"s2"})
		g5 := sg("g5", false, false, []string{"s3"}, []string{"s4"})
		if err := s.ReplaceSecurityGroups(ctx, []policy.SecurityGroup{g1, g2, g3, g4, g5}); err != nil {
			t.Fatal(err)
		}
		list := func(spaces []string, page store.Page) ([]string, int) {
			t.Helper()
			got, next, err := s.SecurityGroupsBySpaceGuids(ctx, spaces, page)
			if err != nil {
				t.Fatal(err)
			}
			var guids []string
			for _, g := range got {
				guids = append(guids, g.GUID)
			}
			return guids, next.Next
		}
		check := func(name string, spaces []string, page store.Page, want []string, wantNext bool) int {
			t.Helper()
			got, next := list(spaces, page)
			if diff := gocmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", name, diff)
			}
			if (next != 0) != wantNext {
				t.Errorf("%s: next = %d, want a next page: %v", name, next, wantNext)
			}
			return next
		}
		check("defaults only", nil, store.Page{}, []string{"g1", "g2"}, false)
		check("staging and running spaces", []string{"s2"}, store.Page{}, []string{"g1", "g2", "g3", "g4"}, false)
		check("any of several spaces", []string{"nope", "s4", "s1"}, store.Page{}, []string{"g1", "g2", "g3", "g5"}, false)
		next := check("first page", []string{"s1", "s2", "s3"}, store.Page{Limit: 2}, []string{"g1", "g2"}, true)
		next = check("second page", []string{"s1", "s2", "s3"}, store.Page{Limit: 2, From: next}, []string{"g3", "g4"}, true)
		check("last page", []string{"s1", "s2", "s3"}, store.Page{Limit: 2, From: next}, []string{"g5"}, false)
		check("exact fit", nil, store.Page{Limit: 2}, []string{"g1", "g2"}, false)

		all, _, err := s.SecurityGroupsBySpaceGuids(ctx, []string{"s1", "s2", "s3"}, store.Page{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := gocmp.Diff([]policy.SecurityGroup{g1, g2, g3, g4, g5}, all); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}

		// Replace keeps the ids of surviving groups, so pages stay valid.
		_, g3id := list([]string{"s1"}, store.Page{Limit: 2})
		g1.Name, g1.StagingSpaceGUIDs = "renamed", []string{"s7"}
		g6 := sg("g6", true, true, nil, nil)
		if err := s.ReplaceSecurityGroups(ctx, []policy.SecurityGroup{g1, g3, g6}); err != nil {
			t.Fatal(err)
		}
		all, _, _ = s.SecurityGroupsBySpaceGuids(ctx, []string{"s1", "s2", "s3", "s7"}, store.Page{})
		if diff := gocmp.Diff([]policy.SecurityGroup{g1, g3, g6}, all); diff != "" {
			t.Errorf("after replace (-want +got):\n%s", diff)
		}
		check("from a surviving id", []string{"s1"}, store.Page{From: g3id}, []string{"g3", "g6"}, false)

		if err := s.ReplaceSecurityGroups(ctx, nil); err != nil {
			t.Fatal(err)
		}
		check("after replacing with nothing", []string{"s1"}, store.Page{}, nil, false)
	})
}

func TestSecurityGroupsLastUpdated(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		m := newFakeMetrics()
		s := newStoreWith(t, dbType, 2, m, 8)
		stamp := func() int64 {
			t.Helper()
			v, err := s.SecurityGroupsLastUpdated(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		sg := func(guid, name string, running []string) policy.SecurityGroup {
			return policy.SecurityGroup{GUID: guid, Name: name, Rules: rules, RunningDefault: running == nil,
				StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: running}
		}
		initial := stamp()
		if initial == 0 {
			t.Fatal("migrations left no security_groups_info stamp")
		}
		a, b := sg("a", "a", nil), sg("b", "b", []string{"s1", "s2"})
		steps := []struct {
			name   string
			groups []policy.SecurityGroup
			bump   bool
		}{
			{"first groups", []policy.SecurityGroup{a, b}, true},
			{"same content", []policy.SecurityGroup{a, b}, false},
			{"same content, other order", []policy.SecurityGroup{b, a}, false},
			{"nil and empty space lists are the same", []policy.SecurityGroup{a, {GUID: "b", Name: "b", Rules: rules, RunningSpaceGUIDs: []string{"s1", "s2"}}}, false},
			{"renamed", []policy.SecurityGroup{sg("a", "a2", nil), b}, true},
			{"rebound", []policy.SecurityGroup{sg("a", "a2", nil), sg("b", "b", []string{"s1"})}, true},
			{"added", []policy.SecurityGroup{sg("a", "a2", nil), sg("b", "b", []string{"s1"}), sg("c", "c", nil)}, true},
			{"deleted", []policy.SecurityGroup{sg("c", "c", nil)}, true},
			{"emptied", nil, true},
			{"empty again", nil, false},
		}
		prev := initial
		for _, step := range steps {
			if err := s.ReplaceSecurityGroups(ctx, step.groups); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			got := stamp()
			if step.bump && got <= prev {
				t.Errorf("%s: stamp %d did not move forward from %d", step.name, got, prev)
			}
			if !step.bump && got != prev {
				t.Errorf("%s: stamp moved from %d to %d without a change", step.name, prev, got)
			}
			prev = got
		}
		if m.durations["SecurityGroupsStoreLastUpdatedSuccessTime"] == 0 {
			t.Errorf("no SecurityGroupsStoreLastUpdatedSuccessTime sent: %v", m.durations)
		}
		// Policy writes do not move the security groups stamp.
		if err := s.Create(ctx, []policy.Policy{v1("x", "y", "tcp", 80, 80)}); err != nil {
			t.Fatal(err)
		}
		if got := stamp(); got != prev {
			t.Errorf("a policy write moved the security groups stamp from %d to %d", prev, got)
		}
	})
}

// Two syncers replacing at once queue on the security_groups_info row: both
// succeed, and the table holds one of their sets.
func TestReplaceSecurityGroupsConcurrently(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		s := newStore(t, dbType, 2)
		set := func(prefix string) []policy.SecurityGroup {
			var out []policy.SecurityGroup
			for i := range 20 {
				out = append(out, policy.SecurityGroup{GUID: prefix + strconv.Itoa(i), Name: "n", Rules: rules, RunningDefault: true,
					StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: []string{}})
			}
			return out
		}
		sets := [][]policy.SecurityGroup{set("a"), set("b"), append(set("a"), set("b")...)}
		errs := make(chan error, len(sets))
		for _, gs := range sets {
			go func() { errs <- s.ReplaceSecurityGroups(ctx, gs) }()
		}
		for range sets {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		got, _, err := s.SecurityGroupsBySpaceGuids(ctx, nil, store.Page{})
		if err != nil {
			t.Fatal(err)
		}
		n := len(got)
		if n != 20 && n != 40 {
			t.Fatalf("table holds %d groups, want one whole set (20 or 40)", n)
		}
	})
}
