package iptablestest

import (
	"errors"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/iptables"
)

func TestFakeBehavesLikeRestore(t *testing.T) {
	ctx := t.Context()
	tb := New()
	if err := tb.Apply(ctx, iptables.NewTx(iptables.Filter).DeclareChain("a").Append("FORWARD", "-j a").Append("a", "-j ACCEPT")); err != nil {
		t.Fatal(err)
	}
	before := tb.Dump(iptables.Filter)
	for name, tx := range map[string]*iptables.Tx{
		"jump to missing chain":  iptables.NewTx(iptables.Filter).Append("FORWARD", "-j nope"),
		"delete missing rule":    iptables.NewTx(iptables.Filter).Append("a", "-j DROP").Delete("FORWARD", "-j b"),
		"delete referenced":      iptables.NewTx(iptables.Filter).Flush("a").DeleteChain("a"),
		"delete non-empty":       iptables.NewTx(iptables.Filter).Delete("FORWARD", "-j a").DeleteChain("a"),
		"insert past end":        iptables.NewTx(iptables.Filter).Insert("a", 3, "-j DROP"),
		"unknown chain":          iptables.NewTx(iptables.Filter).Flush("zzz"),
		"delete builtin":         iptables.NewTx(iptables.Filter).DeleteChain("INPUT"),
		"over-long chain name":   iptables.NewTx(iptables.Filter).DeclareChain(strings.Repeat("x", 29)),
		"delete number past end": iptables.NewTx(iptables.Filter).DeleteNum("a", 2),
	} {
		if err := tb.Apply(ctx, tx); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if got := tb.Dump(iptables.Filter); got != before {
			t.Errorf("%s: failed transaction changed the table:\n%s", name, got)
		}
	}
	tb.FailNext = errors.New("boom")
	if err := tb.Apply(ctx, iptables.NewTx(iptables.Filter).Flush("a")); err == nil || tb.FailNext != nil {
		t.Error("FailNext not honoured once")
	}
	if err := tb.Apply(ctx, iptables.NewTx(iptables.Filter).Delete("FORWARD", "-j a").Flush("a").DeleteChain("a")); err != nil {
		t.Fatal(err)
	}
	if len(tb.Chains(iptables.Filter)) != 0 || tb.Applied != 2 {
		t.Errorf("chains %q applied %d", tb.Chains(iptables.Filter), tb.Applied)
	}
}
