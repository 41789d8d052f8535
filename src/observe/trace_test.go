package observe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
)

// fakePolicies is the internal API in memory.
type fakePolicies struct {
	ps    []policy.Policy
	stamp int64
	err   error
}

func (f *fakePolicies) Policies(_ context.Context, ids ...string) ([]policy.Policy, error) {
	if f.err != nil {
		return nil, f.err
	}
	if len(ids) == 0 {
		return f.ps, nil
	}
	var out []policy.Policy
	for _, p := range f.ps {
		for _, id := range ids {
			if p.Source.ID == id || p.Destination.ID == id {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}

func (f *fakePolicies) LastUpdated(context.Context) (int64, error) { return f.stamp, nil }

// fakeCell is a cell agent: its containers and what it enforced.
type fakeCell struct {
	name     string
	cs       []Container
	enforced Enforced
	down     bool
}

func (c *fakeCell) Name() string { return c.name }
func (c *fakeCell) Containers(context.Context) (Containers, error) {
	if c.down {
		return Containers{}, errors.New("connection refused")
	}
	return Containers{Containers: c.cs}, nil
}
func (c *fakeCell) Enforced(context.Context) (Enforced, error) {
	if c.down {
		return Enforced{}, errors.New("connection refused")
	}
	return c.enforced, nil
}

func tagged(src, srcTag, dst, dstTag, proto string, start, end int) policy.Policy {
	p := policy.NewPolicy(src, dst, proto, start, end)
	p.Source.Tag, p.Destination.Tag = srcTag, dstTag
	return p
}

var (
	front = App{Name: "frontend", GUID: "f0000000-0000-0000-0000-000000000001"}
	back  = App{Name: "backend", GUID: "b0000000-0000-0000-0000-000000000002"}
)

// lab is two cells: the frontend on cell 1, the backend on cell 2, each
// agent having enforced the policies ps (as its planner would).
func lab(ps []policy.Policy, stamp int64) (*fakePolicies, *fakeCell, *fakeCell) {
	now := time.Now().Add(-2 * time.Second)
	c1 := &fakeCell{name: "10.244.0.11:8721", cs: []Container{{Handle: "h-f", IP: "10.255.11.2", AppGUID: front.GUID}},
		enforced: Enforced{Backend: "iptables", Chain: "vpa--1", LastCycle: &now, PoliciesLastUpdated: stamp}}
	c2 := &fakeCell{name: "10.244.0.12:8721", cs: []Container{{Handle: "h-b", IP: "10.255.12.2", AppGUID: back.GUID}},
		enforced: Enforced{Backend: "iptables", Chain: "vpa--2", LastCycle: &now, PoliciesLastUpdated: stamp}}
	for _, p := range ps {
		c1.enforced.Sources = append(c1.enforced.Sources, MarkedSource{IP: "10.255.11.2", AppGUID: p.Source.ID, Tag: p.Source.Tag})
		c2.enforced.Destinations = append(c2.enforced.Destinations, Destination{IP: "10.255.12.2", AppGUID: p.Destination.ID, Rules: []AllowRule{{
			SourceAppGUID: p.Source.ID, SourceTag: p.Source.Tag, Protocol: p.Destination.Protocol, StartPort: p.Destination.Ports.Start, EndPort: p.Destination.Ports.End,
		}}})
	}
	return &fakePolicies{ps: ps, stamp: stamp}, c1, c2
}

func stepStatus(r Result, name string) []string {
	var out []string
	for _, s := range r.Steps {
		if s.Step == name {
			out = append(out, s.Status)
		}
	}
	return out
}

func TestTraceVerdicts(t *testing.T) {
	pol := tagged(front.GUID, "0001", back.GUID, "0002", "tcp", 8000, 9000)
	q := Query{Source: front, Destination: back, Protocol: "tcp", Port: 8080}
	ctx := context.Background()

	t.Run("allowed", func(t *testing.T) {
		ps, c1, c2 := lab([]policy.Policy{pol}, 7)
		r, err := Trace(ctx, ps, []Cell{c1, c2}, q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict != VerdictAllowed {
			t.Errorf("verdict %s (%s), want allowed", r.Verdict, r.Reason)
		}
		for step, want := range map[string]string{"policy": StatusOK, "tags": StatusOK, "source": StatusOK, "destination": StatusOK} {
			if got := stepStatus(r, step); len(got) != 1 || got[0] != want {
				t.Errorf("step %s: %v, want [%s]", step, got, want)
			}
		}
		if len(r.Policies) != 1 || !r.Policies[0].Allows {
			t.Errorf("policies %+v", r.Policies)
		}
	})
	t.Run("denied: no policy", func(t *testing.T) {
		ps, c1, c2 := lab(nil, 7)
		r, err := Trace(ctx, ps, []Cell{c1, c2}, q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict != VerdictDenied {
			t.Errorf("verdict %s (%s), want denied", r.Verdict, r.Reason)
		}
		if got := stepStatus(r, "policy"); len(got) != 1 || got[0] != StatusFail {
			t.Errorf("policy step %v", got)
		}
	})
	t.Run("denied: policy on another port", func(t *testing.T) {
		ps, c1, c2 := lab([]policy.Policy{pol}, 7)
		r, err := Trace(ctx, ps, []Cell{c1, c2}, Query{Source: front, Destination: back, Protocol: "tcp", Port: 9001})
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict != VerdictDenied {
			t.Errorf("verdict %s (%s), want denied", r.Verdict, r.Reason)
		}
		var text strings.Builder
		if err := r.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text.String(), "policies between them allow only tcp 8000-9000") {
			t.Errorf("text does not name the other policy:\n%s", text.String())
		}
	})
	t.Run("pending: the destination cell has not enforced it", func(t *testing.T) {
		ps, c1, c2 := lab([]policy.Policy{pol}, 7)
		c2.enforced.Destinations, c2.enforced.PoliciesLastUpdated = nil, 6
		r, err := Trace(ctx, ps, []Cell{c1, c2}, q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict != VerdictPending {
			t.Errorf("verdict %s (%s), want pending", r.Verdict, r.Reason)
		}
		if got := stepStatus(r, "destination"); len(got) != 1 || got[0] != StatusFail {
			t.Errorf("destination step %v", got)
		}
		var stale bool
		for _, s := range r.Steps {
			stale = stale || (s.Step == "agent" && s.Status == StatusWarn && strings.Contains(s.Detail, "not yet caught up"))
		}
		if !stale {
			t.Errorf("no agent warning about the stale stamp: %+v", r.Steps)
		}
	})
	t.Run("allowed after removal: stale rules", func(t *testing.T) {
		_, c1, c2 := lab([]policy.Policy{pol}, 7)
		r, err := Trace(ctx, &fakePolicies{stamp: 8}, []Cell{c1, c2}, q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict != VerdictAllowed || !strings.Contains(r.Reason, "not yet removed") {
			t.Errorf("verdict %s (%s), want allowed by stale rules", r.Verdict, r.Reason)
		}
	})
	t.Run("partial: one of two destination instances", func(t *testing.T) {
		ps, c1, c2 := lab([]policy.Policy{pol}, 7)
		c2.cs = append(c2.cs, Container{Handle: "h-b2", IP: "10.255.12.3", AppGUID: back.GUID})
		r, err := Trace(ctx, ps, []Cell{c1, c2}, q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict != VerdictPartial {
			t.Errorf("verdict %s (%s), want partial", r.Verdict, r.Reason)
		}
	})
	t.Run("unknown: no cells, cell down, no destination", func(t *testing.T) {
		ps, c1, c2 := lab([]policy.Policy{pol}, 7)
		for name, cells := range map[string][]Cell{"none": nil, "down": {c1, &fakeCell{name: "x", down: true}}, "no destination": {c1}} {
			r, err := Trace(ctx, ps, cells, q)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != VerdictUnknown {
				t.Errorf("%s: verdict %s (%s), want unknown", name, r.Verdict, r.Reason)
			}
		}
		_ = c2
	})
	t.Run("policy disabled on the cells", func(t *testing.T) {
		_, c1, c2 := lab(nil, 7)
		c1.enforced.PolicyDisabled, c2.enforced.PolicyDisabled = true, true
		r, err := Trace(ctx, &fakePolicies{}, []Cell{c1, c2}, q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict != VerdictAllowed {
			t.Errorf("verdict %s (%s), want allowed", r.Verdict, r.Reason)
		}
	})
	t.Run("policy server down is an error", func(t *testing.T) {
		_, c1, c2 := lab(nil, 7)
		if _, err := Trace(ctx, &fakePolicies{err: errors.New("refused")}, []Cell{c1, c2}, q); err == nil {
			t.Error("want the error")
		}
	})
}

func TestTraceText(t *testing.T) {
	ps, c1, c2 := lab([]policy.Policy{tagged(front.GUID, "000A", back.GUID, "000B", "tcp", 8080, 8080)}, 7)
	r, err := Trace(context.Background(), ps, []Cell{c1, c2}, Query{Source: front, Destination: back, Protocol: "tcp", Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"trace frontend -> backend tcp 8080\n",
		"[ok]   policy",
		"frontend is tag 000A (packets marked 0xa), backend is tag 000B",
		"cell 10.244.0.11:8721: frontend 10.255.11.2: packets are marked 0xa (tag 000A)",
		"cell 10.244.0.12:8721: backend 10.255.12.2: accepts tag 000A on tcp 8080 (in vpa--2)",
		"policies up to date (7)",
		"verdict: ALLOWED (a policy allows it and every cell involved enforces it)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

// TestTraceShowsIPv6OnDualStackCells: containers of dual-stack cells are
// shown with their IPv6 address beside the IPv4 one, and the agent step
// says the rules apply to IPv6 too.
func TestTraceShowsIPv6OnDualStackCells(t *testing.T) {
	pol := tagged(front.GUID, "0001", back.GUID, "0002", "tcp", 8000, 9000)
	ps, c1, c2 := lab([]policy.Policy{pol}, 7)
	c1.cs[0].IPv6, c2.cs[0].IPv6 = "fd73:696c:6b::aff:b02", "fd73:696c:6b::aff:c02"
	c2.enforced.IPv6OverlayNetwork = "fd73:696c:6b::/96"
	r, err := Trace(context.Background(), ps, []Cell{c1, c2}, Query{Source: front, Destination: back, Protocol: "tcp", Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, s := range r.Steps {
		text.WriteString(s.Step + ": " + s.Detail + "\n")
	}
	for _, want := range []string{
		"source: frontend 10.255.11.2 (fd73:696c:6b::aff:b02): packets are marked",
		"destination: backend 10.255.12.2 (fd73:696c:6b::aff:c02): accepts tag 0001",
		"dual stack (IPv6 overlay fd73:696c:6b::/96, the same rules for IPv6)",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("trace lacks %q:\n%s", want, text.String())
		}
	}
	if r.Verdict != VerdictAllowed {
		t.Errorf("verdict %s", r.Verdict)
	}
}
