package cleanup_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/cleanup"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

type memStore struct {
	policies []policy.Policy
	deletes  int
	allErr   error
	delErr   error
}

func (s *memStore) All(context.Context) ([]policy.Policy, error) {
	return slices.Clone(s.policies), s.allErr
}

func (s *memStore) Delete(_ context.Context, ps []policy.Policy) error {
	if s.delErr != nil {
		return s.delErr
	}
	s.deletes++
	for _, p := range ps {
		s.policies = slices.DeleteFunc(s.policies, func(q policy.Policy) bool { return q == p })
	}
	return nil
}

type registry struct {
	live   map[string]bool
	chunks [][]string
	token  string
	fail   error
}

func (r *registry) LiveAppGUIDs(_ context.Context, token string, guids []string) (map[string]struct{}, error) {
	r.chunks = append(r.chunks, slices.Clone(guids))
	r.token = token
	if r.fail != nil {
		return nil, r.fail
	}
	out := map[string]struct{}{}
	for _, g := range guids {
		if r.live[g] {
			out[g] = struct{}{}
		}
	}
	return out, nil
}

type tokens struct{ err error }

func (t tokens) GetToken(context.Context) (string, error) { return "client-token", t.err }

func TestDeleteStalePolicies(t *testing.T) {
	st := &memStore{}
	reg := &registry{live: map[string]bool{}}
	// 150 live apps in 75 policies, then policies naming dead apps.
	for i := range 75 {
		src, dst := fmt.Sprintf("live-%03d", 2*i), fmt.Sprintf("live-%03d", 2*i+1)
		reg.live[src], reg.live[dst] = true, true
		st.policies = append(st.policies, policy.NewPolicy(src, dst, "tcp", 80, 80))
	}
	stale := []policy.Policy{
		policy.NewPolicy("live-000", "dead-1", "tcp", 3333, 3333),
		policy.NewPolicy("dead-2", "live-001", "udp", 1, 2),
		policy.NewPolicy("dead-1", "dead-3", "tcp", 9, 9), // both dead: returned once
	}
	st.policies = append(st.policies, stale...)
	for i := range stale {
		stale[i].Source.Tag, stale[i].Destination.Tag = "", ""
	}

	c := cleanup.New(logtest.New(t), st, tokens{}, reg)
	got, err := c.DeleteStalePolicies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stale, got); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	if len(st.policies) != 75 || st.deletes != 1 {
		t.Errorf("%d policies left after %d deletes", len(st.policies), st.deletes)
	}
	// 153 distinct apps in chunks of 100, with the client token.
	if len(reg.chunks) != 2 || len(reg.chunks[0]) != 100 || len(reg.chunks[1]) != 53 || reg.token != "client-token" {
		t.Errorf("chunks %d (%d, ...), token %q", len(reg.chunks), len(reg.chunks[0]), reg.token)
	}
	// Nothing stale: the database is not written.
	got, err = c.DeleteStalePolicies(context.Background())
	if err != nil || len(got) != 0 || got == nil || st.deletes != 1 {
		t.Errorf("second run = %v, %v, deletes %d", got, err, st.deletes)
	}
}

func TestDeleteStalePoliciesFailures(t *testing.T) {
	boom := errors.New("boom")
	one := []policy.Policy{policy.NewPolicy("a", "b", "tcp", 1, 1)}
	for _, tt := range []struct {
		name string
		st   *memStore
		tok  tokens
		reg  *registry
		want string
	}{
		{"read", &memStore{policies: one, allErr: boom}, tokens{}, &registry{}, "database read failed for c2c policies: boom"},
		{"token", &memStore{policies: one}, tokens{err: boom}, &registry{}, "get UAA token failed: boom"},
		{"cc", &memStore{policies: one}, tokens{}, &registry{fail: boom}, "get app guids from Cloud-Controller failed: boom"},
		{"write", &memStore{policies: one, delErr: boom}, tokens{}, &registry{}, "database write failed: boom"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cleanup.New(logtest.New(t), tt.st, tt.tok, tt.reg).DeleteStalePolicies(context.Background())
			if err == nil || err.Error() != tt.want {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
			if tt.name != "write" && len(tt.st.policies) != 1 {
				t.Error("deleted despite the failure")
			}
		})
	}
}

func TestPollCycleSkipsTheFirstCall(t *testing.T) {
	st := &memStore{policies: []policy.Policy{policy.NewPolicy("a", "dead", "tcp", 1, 1)}}
	reg := &registry{live: map[string]bool{"a": true}}
	cycle := cleanup.New(logtest.New(t), st, tokens{}, reg).PollCycle()
	if err := cycle(context.Background()); err != nil || len(st.policies) != 1 {
		t.Fatalf("first cycle ran: %v", err)
	}
	if err := cycle(context.Background()); err != nil || len(st.policies) != 0 {
		t.Fatalf("second cycle: %v, %d left", err, len(st.policies))
	}
	reg.fail = errors.New("cc down")
	st.policies = []policy.Policy{policy.NewPolicy("a", "dead", "tcp", 1, 1)}
	if err := cycle(context.Background()); err == nil || !strings.Contains(err.Error(), "cc down") {
		t.Fatalf("failing cycle: %v", err)
	}
}
