package internalapi

import (
	"context"

	"github.com/netman-release/netman/src/policy"
)

// Targeted long-polls. Without them every policy change wakes every
// agent's long-poll of policies_last_updated, and every agent fetches its
// policies at once: at a thousand cells a thousand fetches per change, of
// which the one or two cells the change concerns are a random part. An
// agent may instead name its cell's app (and space) guids with id=, as in
// its policies query; the watcher then keeps a bounded log of which guids
// each change touched and wakes a long-poll only for a change that touched
// one of its guids.
//
// A change's guids come from diffing the whole policy set (with tags) the
// store loads at the new stamp against the one loaded at the previous
// stamp, so a change written by another policy-server instance, or by
// upstream's policy-server, is seen exactly as a local one. Every policy
// added, removed or altered (a tag reassigned) touches its source and its
// destination guid: the source's cell marks with the source tag, the
// destination's cell accepts it, and both fetch.

// PolicySnapshot reads the current policy set and the stamp it was loaded
// at (store.Store.PolicySnapshot). The slice is shared: read only.
type PolicySnapshot func(ctx context.Context) (version int64, policies []policy.Policy, err error)

// Log bounds: a long-poll whose since is older than the log answers at once
// (the client fetches once, which is always safe).
const (
	maxLogEntries = 1024
	maxLogGuids   = 200000
)

// change is one step of the log: the stamp reached and the guids whose
// policies differ from those at the previous entry's stamp.
type change struct {
	seq     uint64
	version int64
	touched map[string]struct{}
}

// changeLog is the watcher's record of recent stamps; guarded by the
// watcher's mutex.
type changeLog struct {
	limit   int // entries held at most; maxLogEntries when 0
	entries []change
	guids   int // touched guids held, for the bound
	nextSeq uint64
}

// add records that the policies reached version, touching touched since
// the last entry. A nil touched (the first read: nothing to diff against)
// starts the log afresh.
func (l *changeLog) add(version int64, touched map[string]struct{}, first bool) {
	if first {
		l.entries, l.guids = l.entries[:0], 0
	}
	l.nextSeq++
	l.entries = append(l.entries, change{seq: l.nextSeq, version: version, touched: touched})
	l.guids += len(touched)
	drop := 0
	limit := l.limit
	if limit <= 0 {
		limit = maxLogEntries
	}
	for len(l.entries)-drop > limit || (l.guids > maxLogGuids && len(l.entries)-drop > 1) {
		l.guids -= len(l.entries[drop].touched)
		drop++
	}
	if drop > 0 {
		l.entries = append(l.entries[:0], l.entries[drop:]...)
	}
}

// find returns the seq of the latest entry at version (0: not in the log).
func (l *changeLog) find(version int64) uint64 {
	for i := len(l.entries) - 1; i >= 0; i-- {
		if l.entries[i].version == version {
			return l.entries[i].seq
		}
	}
	return 0
}

// touchedAfter reports whether an entry after seq touched one of ids, or
// the log no longer holds every entry after seq (then it cannot tell and
// says yes, which is safe). Otherwise it also returns the seq and stamp of
// the last entry. Seqs of the entries held are consecutive.
func (l *changeLog) touchedAfter(seq uint64, ids map[string]struct{}) (touched bool, lastSeq uint64, lastVersion int64) {
	if len(l.entries) == 0 || seq+1 < l.entries[0].seq {
		return true, 0, 0
	}
	for i := int(seq + 1 - l.entries[0].seq); i < len(l.entries); i++ {
		if touches(l.entries[i].touched, ids) {
			return true, 0, 0
		}
	}
	last := l.entries[len(l.entries)-1]
	return false, last.seq, last.version
}

func touches(touched, ids map[string]struct{}) bool {
	small, big := touched, ids
	if len(small) > len(big) {
		small, big = big, small
	}
	for id := range small {
		if _, ok := big[id]; ok {
			return true
		}
	}
	return false
}

// policyDiffer turns successive policy snapshots into the guids each
// change touched. It is only used by the watcher's goroutine.
type policyDiffer struct {
	snapshot PolicySnapshot
	version  int64
	policies []policy.Policy
	loaded   bool
}

// read loads the current snapshot; when its stamp differs from the last
// one it returns the guids of every policy in one and not the other.
func (d *policyDiffer) read(ctx context.Context) (version int64, s step, err error) {
	v, ps, err := d.snapshot(ctx)
	if err != nil {
		return 0, step{}, err
	}
	if !d.loaded {
		d.version, d.policies, d.loaded = v, ps, true
		return v, step{logged: true, first: true}, nil
	}
	if v == d.version {
		return v, step{}, nil
	}
	touched := diffGuids(d.policies, ps)
	d.version, d.policies = v, ps
	return v, step{logged: true, touched: touched}, nil
}

// step is what one read adds to the log: nothing, a fresh start (first),
// or a change touching touched.
type step struct {
	logged, first bool
	touched       map[string]struct{}
}

// diffGuids is the source and destination guid of every policy that is in
// one of old and new but not the other (counting duplicates).
func diffGuids(old, new []policy.Policy) map[string]struct{} {
	count := make(map[policy.Policy]int, len(old))
	for _, p := range old {
		count[p]++
	}
	touched := map[string]struct{}{}
	add := func(p policy.Policy) {
		touched[p.Source.ID] = struct{}{}
		touched[p.Destination.ID] = struct{}{}
	}
	for _, p := range new {
		if count[p] > 0 {
			count[p]--
			continue
		}
		add(p)
	}
	for p, n := range count {
		if n > 0 {
			add(p)
		}
	}
	return touched
}
