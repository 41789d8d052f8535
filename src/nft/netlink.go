package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The fast path. A transaction made only of element additions and
// deletions (what a policy change becomes once the diff has run), or of
// those and the regular chains and rules netlinkrules.go encodes (the
// wrapper's per-container chains), is sent
// over netlink from the calling thread as one nftables batch, all of it or
// nothing, as nft would send it, instead of starting an nft process (17–24
// ms of CPU per process on the machines measured, whatever the
// transaction). Elements are encoded from their canonical text with the
// set's types, which the Kernel learns from what it reads (Read, ReadSet)
// and from the set definitions it runs through nft. A transaction holding
// anything else, touching a set whose types it has not learnt, or holding a
// value it cannot encode (an interface wildcard, an ICMP type by name, a
// non-concatenated interval set) goes to nft as before.

// maxNetlinkElements bounds an element-only transaction sent as one
// netlink batch (all of it or nothing). A transaction holding more
// element commands is a bulk load.
//
// Bulk loads. A transaction that fills sets it creates (a first sync, a
// set recreated) with more than maxNetlinkElements elements, all of which
// netlink can carry, is run in parts, in its order: each run of element
// commands over netlink, in batches of up to netlinkBatchElements, and
// the commands between them (table, chains, sets, rules) by nft. nft
// takes about 0.7 s of CPU for 50,000 elements; encoded here, the kernel
// takes them in batches at a fraction of that. The parts are separate
// transactions: while they run, the new sets are partly filled, and when
// one fails those before it stay applied; the caller (the Enforcer)
// converges from what the table then holds by reading it. Any other large
// transaction (thousands of elements changing in sets that exist) runs
// through nft in one transaction.
const (
	maxNetlinkElements   = 1000
	netlinkBatchElements = 1024
	// messageElements bounds one netlink message: its element list is
	// one attribute, whose length is 16 bits.
	messageElements = 256
)

// setTypes is a set's key and value types and interval flag.
type setTypes struct {
	key, value []string
	interval   bool
}

// typeCache remembers the types of netman's sets, by name.
type typeCache struct {
	mu    sync.Mutex
	types map[string]setTypes
}

func (c *typeCache) put(name, key, value string, interval bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.types == nil {
		c.types = map[string]setTypes{}
	}
	t := setTypes{key: strings.Split(key, " . "), interval: interval}
	if value != "" {
		t.value = strings.Split(value, " . ")
	}
	c.types[name] = t
}

func (c *typeCache) get(name string) (setTypes, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.types[name]
	return t, ok
}

func (c *typeCache) forget(name string) {
	c.mu.Lock()
	delete(c.types, name)
	c.mu.Unlock()
}

// reset forgets every set's types but the skeleton's, which are constant:
// a fresh process (every CNI ADD) sends its dispatch elements over netlink
// without reading first.
func (c *typeCache) reset() {
	c.mu.Lock()
	c.types = nil
	c.mu.Unlock()
	for _, s := range Skeleton().Sets {
		c.put(s.Name, s.Type, s.Value, s.Interval)
	}
}

// learnState records the types of every set in st.
func (c *typeCache) learnState(st *State) {
	for _, s := range st.Sets {
		c.put(s.Name, s.Type, s.Value, s.Interval)
	}
}

// learnCommands records the set definitions in the nft commands that were
// just applied, and forgets deleted sets. The lines are knftables' output:
// "add set inet netman NAME { type T ; flags interval ; }", "add map inet
// netman NAME { type K : V ; }", "delete set inet netman NAME".
func (c *typeCache) learnCommands(text string) {
	prefix := " " + string(Family) + " " + TableName + " "
	for _, line := range strings.Split(text, "\n") {
		verb, rest, _ := strings.Cut(line, " ")
		kind, rest, _ := strings.Cut(rest, " ")
		switch {
		case kind == "table" && verb == "delete":
			c.reset()
		case (kind == "set" || kind == "map") && strings.HasPrefix(" "+rest, prefix):
			rest = strings.TrimPrefix(" "+rest, prefix)
			name, def, _ := strings.Cut(rest, " ")
			switch verb {
			case "delete":
				c.forget(name)
			case "add", "create":
				typ, ok := between(def, "type ", " ;")
				if !ok {
					c.forget(name)
					continue
				}
				key, value, _ := strings.Cut(typ, " : ")
				flags, _ := between(def, "flags ", " ;")
				c.put(name, key, value, strings.Contains(flags, "interval"))
			}
		}
	}
}

func between(s, start, end string) (string, bool) {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return "", false
	}
	v, _, ok := strings.Cut(after, end)
	return v, ok
}

// elementOp is one "add element" or "delete element" command.
type elementOp struct {
	del        bool
	set        string
	key, value string
}

// netlinkOp is one command of a transaction the fast path sends: an
// element command, or (the wrapper's chains) adding, flushing or deleting
// a regular chain, or adding a rule it can encode (netlinkrules.go).
type netlinkOp struct {
	verb  string // "element", "add chain", "flush chain", "delete chain", "add rule"
	el    elementOp
	chain string
	rule  []expr.Any
}

// parseOps parses a transaction's text when every command in it is one
// the fast path sends, and it is small enough for one batch; ok is false
// otherwise.
func parseOps(text string) (ops []netlinkOp, ok bool) {
	tail := " " + string(Family) + " " + TableName + " "
	elements := 0
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if op, isElem := parseElementOp(line); isElem {
			ops = append(ops, netlinkOp{verb: "element", el: op})
			elements++
			continue
		}
		verb, rest, _ := strings.Cut(line, " ")
		kind, rest, _ := strings.Cut(rest, " ")
		rest, found := strings.CutPrefix(" "+rest, tail)
		if !found {
			return nil, false
		}
		switch kind {
		case "chain":
			// A regular chain: a name alone (a base chain has a body).
			if (verb != "add" && verb != "flush" && verb != "delete") || strings.Contains(rest, " ") || ValidName(rest) != nil {
				return nil, false
			}
			ops = append(ops, netlinkOp{verb: verb + " chain", chain: rest})
		case "rule":
			chain, rule, _ := strings.Cut(rest, " ")
			if verb != "add" || ValidName(chain) != nil || strings.HasPrefix(rule, "index ") || strings.HasPrefix(rule, "handle ") {
				return nil, false
			}
			exprs, err := encodeRule(rule)
			if err != nil {
				return nil, false
			}
			ops = append(ops, netlinkOp{verb: "add rule", chain: chain, rule: exprs})
		default:
			return nil, false
		}
	}
	return ops, len(ops) > 0 && elements <= maxNetlinkElements && len(ops) <= 2*maxNetlinkElements
}

// parseElementOp parses one "add element" or "delete element" command on
// netman's table holding one element without a comment.
func parseElementOp(line string) (op elementOp, ok bool) {
	prefix := " element " + string(Family) + " " + TableName + " "
	switch {
	case strings.HasPrefix(line, "add"+prefix):
		line = line[len("add"+prefix):]
	case strings.HasPrefix(line, "delete"+prefix):
		line = line[len("delete"+prefix):]
		op.del = true
	default:
		return op, false
	}
	name, body, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(body, "{ ") || !strings.HasSuffix(body, " }") {
		return op, false
	}
	body = body[2 : len(body)-2]
	op.set = name
	op.key, op.value, _ = strings.Cut(body, " : ")
	if strings.Contains(op.key, " comment ") || strings.Contains(op.key, ",") {
		return op, false
	}
	return op, true
}

// bulk reports whether a transaction of segs (text) is a bulk load: more
// than maxNetlinkElements elements added to sets it creates, and every
// element encodable.
func (k *Kernel) bulk(text string, segs []segment) bool {
	var created typeCache
	created.learnCommands(text)
	n := 0
	for _, s := range segs {
		for _, op := range s.ops {
			t, isNew := created.get(op.set)
			if !isNew {
				var ok bool
				if t, ok = k.types.get(op.set); !ok {
					return false
				}
			}
			if _, err := encodeElement(t, op, !op.del); err != nil {
				return false
			}
			if isNew && !op.del {
				n++
			}
		}
	}
	return n > maxNetlinkElements
}

// segment is a run of consecutive commands of a transaction (text, for
// nft): element commands (ops), or anything else (ops nil).
type segment struct {
	ops  []elementOp
	text string
}

// segments splits a transaction's text into runs of element commands and
// runs of other commands, in order, and counts the element commands.
func segments(text string) (segs []segment, elements int) {
	var cur strings.Builder
	var ops []elementOp
	isElem := false
	flush := func() {
		if cur.Len() > 0 {
			segs = append(segs, segment{ops: ops, text: cur.String()})
		}
		cur.Reset()
		ops = nil
	}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		op, ok := parseElementOp(line)
		if ok != isElem {
			flush()
			isElem = ok
		}
		if ok {
			ops = append(ops, op)
			elements++
		}
		cur.WriteString(line)
		cur.WriteString("\n")
	}
	flush()
	return segs, elements
}

// errNoFastPath says a transaction cannot be encoded for netlink.
var errNoFastPath = errors.New("nft: not encodable for netlink")

// sendOps applies ops in the calling thread's network namespace, in their
// order, as netlink batches of up to perBatch elements each (one batch,
// all of it or nothing, when perBatch is at least the number of
// elements). errNoFastPath (before anything was sent) means the caller
// should run them through nft instead.
func (k *Kernel) sendOps(ops []netlinkOp, perBatch int) error {
	table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	sets := map[string]*nftables.Set{}
	// A message is one chain or rule command (op), or a run of element
	// operations of one kind on one set.
	type message struct {
		op  *netlinkOp
		set *nftables.Set
		del bool
		els []nftables.SetElement
	}
	var msgs []message
	for i := range ops {
		op := &ops[i]
		if op.verb != "element" {
			msgs = append(msgs, message{op: op})
			continue
		}
		t, ok := k.types.get(op.el.set)
		if !ok {
			return errNoFastPath
		}
		el, err := encodeElement(t, op.el, !op.el.del)
		if err != nil {
			return errNoFastPath
		}
		s := sets[op.el.set]
		if s == nil {
			s = &nftables.Set{Table: table, Name: op.el.set, IsMap: len(t.value) > 0, Interval: t.interval, Concatenation: len(t.key) > 1}
			sets[op.el.set] = s
		}
		// Consecutive operations of one kind on one set share a message
		// (up to messageElements); the batch keeps the transaction's order.
		if n := len(msgs); n > 0 && msgs[n-1].op == nil && msgs[n-1].set == s && msgs[n-1].del == op.el.del && len(msgs[n-1].els) < messageElements {
			msgs[n-1].els = append(msgs[n-1].els, el)
			continue
		}
		msgs = append(msgs, message{set: s, del: op.el.del, els: []nftables.SetElement{el}})
	}
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(largeReceiveBuffer))
	if err != nil {
		return fmt.Errorf("nft: netlink: %w", err)
	}
	defer conn.CloseLasting()
	inBatch := 0
	for i, m := range msgs {
		switch {
		case m.op == nil && m.del:
			err = conn.SetDeleteElements(m.set, m.els)
		case m.op == nil:
			err = conn.SetAddElements(m.set, m.els)
		case m.op.verb == "add chain":
			conn.AddChain(&nftables.Chain{Table: table, Name: m.op.chain})
		case m.op.verb == "flush chain":
			conn.FlushChain(&nftables.Chain{Table: table, Name: m.op.chain})
		case m.op.verb == "delete chain":
			conn.DelChain(&nftables.Chain{Table: table, Name: m.op.chain})
		case m.op.verb == "add rule":
			conn.AddRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Table: table, Name: m.op.chain}, Exprs: m.op.rule})
		}
		if err != nil {
			return fmt.Errorf("nft: netlink: %w", err)
		}
		inBatch += len(m.els)
		if i == len(msgs)-1 || inBatch+len(msgs[i+1].els) > perBatch {
			if err := conn.Flush(); err != nil {
				return err
			}
			inBatch = 0
		}
	}
	return nil
}

// ackBuffer is the receive buffer of a fast-path socket. The kernel
// acknowledges every message of a batch, and a batch holds a message per
// set and run of elements (the agent's delta of one rule changed on 250
// containers: 500): with the default buffer (212,992 bytes) the
// acknowledgements of about 300 messages overflow it, recvmsg fails with
// ENOBUFS although the batch was applied, and the caller, told it failed,
// falls back to reading the whole table.
const ackBuffer = 16 << 20

// largeReceiveBuffer sets the socket's receive buffer to ackBuffer,
// beyond net.core.rmem_max when the process may (SO_RCVBUFFORCE, root).
func largeReceiveBuffer(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil // keep the default
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, ackBuffer)
	}); err != nil || serr != nil {
		_ = c.SetReadBuffer(ackBuffer) // capped at rmem_max
	}
	return nil
}

// readElements fills the elements of st's sets (not the dynamic ones)
// from the kernel over netlink, decoded into canonical text with the
// set's types: one dump per set instead of nft's JSON listing of every
// element (about 1.7 s of nft CPU at 50,000 elements). It returns the
// sets it could not decode (verdict maps, whose data the netlink library
// does not decode; non-concatenated interval sets, which hold start and
// end elements; values encodeField does not know), to be listed by nft.
// With more than maxSlow of those it reads nothing and returns them
// (the caller lists the whole table through nft anyway).
func (k *Kernel) readElements(st *State, maxSlow int) (slow []*SetState, err error) {
	var fast []*SetState
	for _, name := range slices.Sorted(maps.Keys(st.Sets)) {
		s := st.Sets[name]
		if s.Dynamic {
			continue
		}
		if t, _ := k.types.get(name); decodable(t) {
			fast = append(fast, s)
		} else {
			slow = append(slow, s)
		}
	}
	if len(slow) > maxSlow || len(fast) == 0 {
		return slow, nil
	}
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nft: netlink: %w", err)
	}
	defer conn.CloseLasting()
	table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	for _, s := range fast {
		name := s.Name
		t, _ := k.types.get(name)
		els, err := conn.GetSetElements(&nftables.Set{Table: table, Name: name})
		if err != nil {
			return nil, fmt.Errorf("nft: netlink: reading set %s: %w", name, err)
		}
		for _, el := range els {
			key, value, err := decodeElement(t, el)
			if err != nil {
				clear(s.Elements)
				slow = append(slow, s)
				break
			}
			s.Elements[key] = value
		}
	}
	return slow, nil
}

// decodable reports whether readElements can decode a set of types t.
func decodable(t setTypes) bool {
	if len(t.key) == 0 || (t.interval && len(t.key) == 1) {
		return false
	}
	return len(t.value) == 0 || t.value[0] != "verdict"
}

// decodeElement is encodeElement's inverse: an element read from the
// kernel as the canonical text State holds.
func decodeElement(t setTypes, el nftables.SetElement) (key, value string, err error) {
	concat := len(t.key) > 1
	fields := make([]string, len(t.key))
	lo, hi := el.Key, el.KeyEnd
	for i, typ := range t.key {
		var f string
		if f, lo, hi, err = decodeField(typ, lo, hi, t.interval, concat); err != nil {
			return "", "", err
		}
		fields[i] = f
	}
	if len(lo) != 0 {
		return "", "", errNoFastPath
	}
	if len(t.value) == 0 {
		return Key(fields...), "", nil
	}
	vals := make([]string, len(t.value))
	v := el.Val
	for i, typ := range t.value {
		if vals[i], v, _, err = decodeField(typ, v, nil, false, len(t.value) > 1); err != nil {
			return "", "", err
		}
	}
	if len(v) != 0 {
		return "", "", errNoFastPath
	}
	return Key(fields...), Key(vals...), nil
}

// decodeField decodes the first field of lo (and of hi, the end key of an
// interval element) and returns the rest of both.
func decodeField(typ string, lo, hi []byte, ranged, pad bool) (text string, restLo, restHi []byte, err error) {
	size := map[string]int{"mark": 4, "ipv4_addr": 4, "ipv6_addr": 16, "inet_proto": 1, "inet_service": 2, "ifname": 16}[typ]
	if size == 0 || len(lo) < size || (ranged && len(hi) < size) {
		return "", nil, nil, errNoFastPath
	}
	step := size
	if pad {
		step = (size + 3) &^ 3
		if len(lo) < step || (ranged && len(hi) < step) {
			return "", nil, nil, errNoFastPath
		}
	}
	a, b := lo[:size], lo[:size]
	if ranged {
		b = hi[:size]
		hi = hi[step:]
	}
	lo = lo[step:]
	switch typ {
	case "mark":
		if !ranged {
			return Mark(binary.NativeEndian.Uint32(a)), lo, hi, nil
		}
		x, y := binary.BigEndian.Uint32(a), binary.BigEndian.Uint32(b)
		if x == y {
			return Mark(x), lo, hi, nil
		}
		return Range(x, y), lo, hi, nil
	case "ipv4_addr":
		return addrRange(binary.BigEndian.Uint32(a), binary.BigEndian.Uint32(b)), lo, hi, nil
	case "ipv6_addr":
		return addr6Range(netip.AddrFrom16([16]byte(a)), netip.AddrFrom16([16]byte(b))), lo, hi, nil
	case "inet_proto":
		if a[0] != b[0] {
			return "", nil, nil, errNoFastPath
		}
		return Proto(a[0]), lo, hi, nil
	case "inet_service":
		return Range(uint32(binary.BigEndian.Uint16(a)), uint32(binary.BigEndian.Uint16(b))), lo, hi, nil
	case "ifname":
		if string(a) != string(b) {
			return "", nil, nil, errNoFastPath
		}
		name, _, _ := strings.Cut(string(a), "\x00")
		return Quote(name), lo, hi, nil
	}
	return "", nil, nil, errNoFastPath
}

// encodeElement encodes one element's key (and its value, when withValue)
// as the kernel holds it: fields of a concatenation padded to 4 bytes;
// in a concatenated interval set a start key and an end key, with every
// integer big-endian; elsewhere a mark in host byte order, as nft sends it.
func encodeElement(t setTypes, op elementOp, withValue bool) (nftables.SetElement, error) {
	fields := strings.Split(op.key, " . ")
	if len(fields) != len(t.key) {
		return nftables.SetElement{}, errNoFastPath
	}
	concat := len(t.key) > 1
	if t.interval && !concat {
		return nftables.SetElement{}, errNoFastPath // rbtree sets take start and end+1 elements
	}
	var el nftables.SetElement
	for i, f := range fields {
		lo, hi, err := encodeField(t.key[i], f, t.interval)
		if err != nil {
			return el, err
		}
		el.Key = appendField(el.Key, lo, concat)
		if t.interval {
			el.KeyEnd = appendField(el.KeyEnd, hi, concat)
		}
	}
	if !withValue || len(t.value) == 0 {
		return el, nil
	}
	if len(t.value) == 1 && t.value[0] == "verdict" {
		v, err := encodeVerdict(op.value)
		if err != nil {
			return el, err
		}
		el.VerdictData = v
		return el, nil
	}
	vals := strings.Split(op.value, " . ")
	if len(vals) != len(t.value) {
		return el, errNoFastPath
	}
	for i, f := range vals {
		v, _, err := encodeField(t.value[i], f, false)
		if err != nil {
			return el, err
		}
		el.Val = appendField(el.Val, v, len(t.value) > 1)
	}
	return el, nil
}

func appendField(b, f []byte, pad bool) []byte {
	b = append(b, f...)
	if pad {
		for len(f)%4 != 0 {
			b = append(b, 0)
			f = append(f, 0)
		}
	}
	return b
}

// encodeField encodes one field's text as its first and last value (the
// same unless ranged is true and the text is a range or prefix).
func encodeField(typ, text string, ranged bool) (lo, hi []byte, err error) {
	split := func() (string, string, bool) {
		if a, b, ok := strings.Cut(text, "-"); ok {
			return a, b, ranged
		}
		return text, text, true
	}
	switch typ {
	case "mark":
		a, b, ok := split()
		x, err1 := strconv.ParseUint(a, 0, 32)
		y, err2 := strconv.ParseUint(b, 0, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, nil, errNoFastPath
		}
		if ranged {
			return binary.BigEndian.AppendUint32(nil, uint32(x)), binary.BigEndian.AppendUint32(nil, uint32(y)), nil
		}
		return binary.NativeEndian.AppendUint32(nil, uint32(x)), nil, nil
	case "ipv4_addr":
		if p, err := netip.ParsePrefix(text); err == nil && ranged && p.Addr().Is4() {
			p = p.Masked()
			first := p.Addr().As4()
			last := first
			v := binary.BigEndian.Uint32(last[:]) | (1<<(32-p.Bits()) - 1)
			binary.BigEndian.PutUint32(last[:], v)
			return first[:], last[:], nil
		}
		a, b, ok := split()
		x, err1 := netip.ParseAddr(a)
		y, err2 := netip.ParseAddr(b)
		if !ok || err1 != nil || err2 != nil || !x.Is4() || !y.Is4() {
			return nil, nil, errNoFastPath
		}
		xa, ya := x.As4(), y.As4()
		return xa[:], ya[:], nil
	case "ipv6_addr":
		if p, err := netip.ParsePrefix(text); err == nil && ranged && p.Addr().Is6() {
			first, last := prefix6Bounds(p)
			return first[:], last[:], nil
		}
		a, b, ok := split()
		x, err1 := netip.ParseAddr(a)
		y, err2 := netip.ParseAddr(b)
		if !ok || err1 != nil || err2 != nil || !x.Is6() || !y.Is6() || x.Zone() != "" || y.Zone() != "" {
			return nil, nil, errNoFastPath
		}
		xa, ya := x.As16(), y.As16()
		return xa[:], ya[:], nil
	case "inet_proto":
		if n, ok := ProtoNumber(text); ok {
			return []byte{n}, []byte{n}, nil
		}
		a, b, ok := split()
		x, err1 := strconv.ParseUint(a, 10, 8)
		y, err2 := strconv.ParseUint(b, 10, 8)
		if !ok || err1 != nil || err2 != nil {
			return nil, nil, errNoFastPath
		}
		return []byte{byte(x)}, []byte{byte(y)}, nil
	case "inet_service":
		a, b, ok := split()
		x, err1 := strconv.ParseUint(a, 10, 16)
		y, err2 := strconv.ParseUint(b, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			return nil, nil, errNoFastPath
		}
		return binary.BigEndian.AppendUint16(nil, uint16(x)), binary.BigEndian.AppendUint16(nil, uint16(y)), nil
	case "ifname":
		name, err := strconv.Unquote(text)
		if err != nil || len(name) == 0 || len(name) >= 16 || strings.ContainsAny(name, "*\\\x00") {
			return nil, nil, errNoFastPath
		}
		b := make([]byte, 16)
		copy(b, name)
		return b, b, nil
	}
	return nil, nil, errNoFastPath
}

func encodeVerdict(text string) (*expr.Verdict, error) {
	verb, chain, _ := strings.Cut(text, " ")
	switch verb {
	case "accept":
		return &expr.Verdict{Kind: expr.VerdictAccept}, nil
	case "drop":
		return &expr.Verdict{Kind: expr.VerdictDrop}, nil
	case "return":
		return &expr.Verdict{Kind: expr.VerdictReturn}, nil
	case "jump", "goto":
		if chain == "" || strings.ContainsAny(chain, " \"") {
			return nil, errNoFastPath
		}
		kind := expr.VerdictJump
		if verb == "goto" {
			kind = expr.VerdictGoto
		}
		return &expr.Verdict{Kind: kind, Chain: chain}, nil
	}
	return nil, errNoFastPath
}

// elementsPerCommand bounds a batched element command. With thousands of
// elements in one command, nft 1.0.6 wrote some marks of the concatenated
// c2c-policies set byte-swapped (seen at 50,000 elements); commands of 256
// elements read back exactly (TestNFTOneChangeTouchesOneElementOn50k
// compares the whole set after the first sync).
const elementsPerCommand = 256

// batchElements rewrites a transaction's text for nft so that consecutive
// element commands of one verb on one set become one command ("add element
// inet netman S { a, b, c }") of up to elementsPerCommand elements: nft
// loads 50,000 elements given that way in about half the time it takes for
// 50,000 commands.
func batchElements(text string) string {
	var b strings.Builder
	b.Grow(len(text))
	var open string // "add element inet netman S {" of the command being built
	n := 0          // elements in it
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		head, body, ok := strings.Cut(line, " { ")
		isElem := ok && strings.HasSuffix(body, " }") && (strings.HasPrefix(head, "add element ") || strings.HasPrefix(head, "delete element ")) &&
			!strings.Contains(body, " comment ")
		if isElem && open == head && n < elementsPerCommand {
			n++
			b.WriteString(", ")
			b.WriteString(strings.TrimSuffix(body, " }"))
			continue
		}
		if open != "" {
			b.WriteString(" }\n")
			open = ""
		}
		if isElem {
			open, n = head, 1
			b.WriteString(head)
			b.WriteString(" { ")
			b.WriteString(strings.TrimSuffix(body, " }"))
			continue
		}
		b.WriteString(line)
		b.WriteString("\n")
	}
	if open != "" {
		b.WriteString(" }\n")
	}
	return b.String()
}

// Has implements Driver over netlink, in the calling thread's network
// namespace: one dump of the table's set definitions (no elements) and one
// request per chain.
func (k *Kernel) Has(_ context.Context, chains, sets []string) bool {
	conn, err := nftables.New()
	if err != nil {
		return false
	}
	table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	if len(sets) > 0 {
		have, err := conn.GetSets(table)
		if err != nil {
			return false
		}
		names := make(map[string]bool, len(have))
		for _, s := range have {
			names[s.Name] = true
		}
		for _, n := range sets {
			if !names[n] {
				return false
			}
		}
	}
	for _, c := range chains {
		if _, err := conn.ListChain(table, c); err != nil {
			return false
		}
	}
	return true
}

// RemoveUnusedSets implements Driver over netlink: the kernel refuses to
// delete a set a rule refers to (EBUSY), which is what tells used from
// unused, atomically with every other writer's transactions.
func (k *Kernel) RemoveUnusedSets(_ context.Context, prefix string) ([]string, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nft: netlink: %w", err)
	}
	table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	sets, err := conn.GetSets(table)
	if err != nil {
		if strings.Contains(err.Error(), "no such file or directory") {
			return nil, nil // no table
		}
		return nil, fmt.Errorf("nft: listing sets: %w", err)
	}
	var removed []string
	for _, s := range sets {
		if !strings.HasPrefix(s.Name, prefix) {
			continue
		}
		conn.DelSet(&nftables.Set{Table: table, Name: s.Name})
		switch err := conn.Flush(); {
		case err == nil:
			k.types.forget(s.Name)
			removed = append(removed, s.Name)
		case errors.Is(err, syscall.EBUSY), errors.Is(err, syscall.ENOENT):
			// In use, or deleted by another writer meanwhile.
		default:
			return removed, fmt.Errorf("nft: deleting set %s: %w", s.Name, err)
		}
	}
	return removed, nil
}

// chainNamesNetlink lists the chains of netman's table over netlink
// (none when the table does not exist).
func chainNamesNetlink() (map[string]bool, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, err
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == TableName {
			names[c.Name] = true
		}
	}
	return names, nil
}

// prefix6Bounds is the first and last address of an IPv6 prefix.
func prefix6Bounds(p netip.Prefix) (first, last [16]byte) {
	p = p.Masked()
	first = p.Addr().As16()
	last = first
	for i := p.Bits(); i < 128; i++ {
		last[i/8] |= 0x80 >> (i % 8)
	}
	return first, last
}

// addr6Range renders an inclusive IPv6 range as nft lists it: one address
// alone, a prefix when the range is exactly one, else "first-last".
func addr6Range(lo, hi netip.Addr) string {
	if lo == hi {
		return lo.String()
	}
	for bits := 127; bits >= 0; bits-- {
		p := netip.PrefixFrom(lo, bits)
		if p.Masked().Addr() != lo {
			break
		}
		if _, last := prefix6Bounds(p); netip.AddrFrom16(last) == hi {
			return p.String()
		}
	}
	return lo.String() + "-" + hi.String()
}
