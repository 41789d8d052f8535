package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
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

// maxNetlinkElements bounds a fast-path transaction, so that its batch
// stays well inside the netlink socket's default send buffer; a larger one
// goes to nft, batched per set (see batchElements).
const maxNetlinkElements = 1000

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
// the fast path sends; ok is false otherwise.
func parseOps(text string) (ops []netlinkOp, ok bool) {
	tail := " " + string(Family) + " " + TableName + " "
	elements := 0
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		verb, rest, _ := strings.Cut(line, " ")
		kind, rest, _ := strings.Cut(rest, " ")
		rest, found := strings.CutPrefix(" "+rest, tail)
		if !found {
			return nil, false
		}
		switch kind {
		case "element":
			if verb != "add" && verb != "delete" {
				return nil, false
			}
			op := elementOp{del: verb == "delete"}
			name, body, _ := strings.Cut(rest, " ")
			if !strings.HasPrefix(body, "{ ") || !strings.HasSuffix(body, " }") {
				return nil, false
			}
			body = body[2 : len(body)-2]
			op.set = name
			op.key, op.value, _ = strings.Cut(body, " : ")
			if strings.Contains(op.key, " comment ") || strings.Contains(op.key, ",") {
				return nil, false
			}
			ops = append(ops, netlinkOp{verb: "element", el: op})
			elements++
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

// errNoFastPath says a transaction cannot be encoded for netlink.
var errNoFastPath = errors.New("nft: not encodable for netlink")

// sendOps applies ops as one netlink batch in the calling thread's network
// namespace, in their order. errNoFastPath (before anything was sent)
// means the caller should run the transaction through nft instead.
func (k *Kernel) sendOps(ops []netlinkOp) error {
	table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	conn, err := nftables.New(nftables.WithSockOptions(largeReceiveBuffer))
	if err != nil {
		return fmt.Errorf("nft: netlink: %w", err)
	}
	sets := map[string]*nftables.Set{}
	// Consecutive element operations of one kind on one set share a
	// message.
	var pending struct {
		set *nftables.Set
		del bool
		els []nftables.SetElement
	}
	flushElements := func() error {
		if len(pending.els) == 0 {
			return nil
		}
		var err error
		if pending.del {
			err = conn.SetDeleteElements(pending.set, pending.els)
		} else {
			err = conn.SetAddElements(pending.set, pending.els)
		}
		pending.els = nil
		if err != nil {
			return errNoFastPath
		}
		return nil
	}
	for _, op := range ops {
		if op.verb != "element" {
			if err := flushElements(); err != nil {
				return err
			}
		}
		switch op.verb {
		case "element":
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
			if pending.set != s || pending.del != op.el.del {
				if err := flushElements(); err != nil {
					return err
				}
				pending.set, pending.del = s, op.el.del
			}
			pending.els = append(pending.els, el)
		case "add chain":
			conn.AddChain(&nftables.Chain{Table: table, Name: op.chain})
		case "flush chain":
			conn.FlushChain(&nftables.Chain{Table: table, Name: op.chain})
		case "delete chain":
			conn.DelChain(&nftables.Chain{Table: table, Name: op.chain})
		case "add rule":
			conn.AddRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Table: table, Name: op.chain}, Exprs: op.rule})
		}
	}
	if err := flushElements(); err != nil {
		return err
	}
	return conn.Flush()
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
