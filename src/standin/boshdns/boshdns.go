// Package boshdns stands in for bosh-dns on a cell: a DNS front end
// listening on a link-local address that containers are given as their
// resolver (dns_servers), answering the domains of bosh-dns's
// handlers.json from their HTTP source — bosh-dns-adapter, which asks the
// service-discovery-controller. Everything else is NXDOMAIN: there are no
// upstream resolvers. Resolver asks such a server, as an app's resolver
// does. The lab runs one per cell (`netman-lab dns`).
package boshdns

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Handler is one entry of bosh-dns's handlers.json (what the
// bosh-dns-adapter job renders): a domain and the HTTP source answering it.
type Handler struct {
	Domain string `json:"domain"`
	Cache  struct {
		Enabled bool `json:"enabled"`
	} `json:"cache"`
	Source struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	} `json:"source"`
}

// Handlers is handlers.json for domains answered by the adapter at url.
func Handlers(url string, domains ...string) []Handler {
	out := make([]Handler, len(domains))
	for i, d := range domains {
		out[i].Domain = dnsmessage.MustNewName(FQDN(d)).String()
		out[i].Source.Type = "http"
		out[i].Source.URL = url
	}
	return out
}

// LoadHandlers reads a handlers.json; only http sources are kept.
func LoadHandlers(path string) ([]Handler, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var all []Handler
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Handler
	for _, h := range all {
		if h.Source.Type != "http" {
			continue
		}
		if _, err := url.Parse(h.Source.URL); err != nil || h.Domain == "" {
			return nil, fmt.Errorf("%s: handler %q: want a domain and an http url", path, h.Domain)
		}
		h.Domain = strings.ToLower(FQDN(h.Domain))
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no http handlers", path)
	}
	return out, nil
}

// FQDN is name with the trailing dot of a fully qualified name.
func FQDN(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// FrontEnd answers DNS queries from handlers.
type FrontEnd struct {
	Handlers []Handler
	Client   *http.Client // default: 5 s timeout (the adapter retries a warming controller for ~1.7 s)
	Log      io.Writer    // a line when a name's answer changes; nil: none

	mu   sync.Mutex
	last map[string]string // question → last answer logged
}

// DefaultAddress is the front end's address unless told otherwise: a
// link-local one, as bosh-dns's 169.254.0.2 upstream.
const DefaultAddress = "169.254.0.53"

// Run is `netman-lab dns`: the DNS front end on --listen (UDP and TCP)
// answering from the handlers in --handlers, until ctx is done.
func Run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("netman-lab dns", flag.ContinueOnError)
	listen := fs.String("listen", DefaultAddress+":53", "address to serve DNS on, UDP and TCP")
	handlers := fs.String("handlers", "", "bosh-dns handlers.json: the domains to answer and the HTTP source (bosh-dns-adapter) answering each")
	if err := fs.Parse(args); err != nil {
		return err
	}
	hs, err := LoadHandlers(*handlers)
	if err != nil {
		return err
	}
	f := &FrontEnd{Handlers: hs, Log: out}
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return err
	}
	defer pc.Close()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer l.Close()
	for _, h := range hs {
		fmt.Fprintf(out, "%s dns on %s (udp, tcp): %s from %s\n", time.Now().Format(time.RFC3339Nano), *listen, h.Domain, h.Source.URL)
	}
	go func() {
		<-ctx.Done()
		pc.Close()
		l.Close()
	}()
	errs := make(chan error, 2)
	go func() { errs <- f.ServeUDP(ctx, pc) }()
	go func() { errs <- f.ServeTCP(ctx, l) }()
	err = <-errs
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ServeUDP answers queries on pc until it is closed.
func (f *FrontEnd) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		query := append([]byte(nil), buf[:n]...)
		go func() {
			if resp := f.Answer(ctx, query, 512); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}()
	}
}

// ServeTCP answers length-prefixed queries on connections from l until it
// is closed.
func (f *FrontEnd) ServeTCP(ctx context.Context, l net.Listener) error {
	for {
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			for {
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				query, err := readTCPMessage(conn)
				if err != nil {
					return
				}
				resp := f.Answer(ctx, query, 65535)
				if resp == nil || writeTCPMessage(conn, resp) != nil {
					return
				}
			}
		}()
	}
}

func readTCPMessage(r io.Reader) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

func writeTCPMessage(w io.Writer, msg []byte) error {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(msg)), uint16(len(msg)))
	_, err := w.Write(append(b, msg...))
	return err
}

// Answer answers one query packet; nil drops it (not a query). Answers
// longer than max are truncated (TC, no records) so the client retries
// over TCP.
func (f *FrontEnd) Answer(ctx context.Context, query []byte, max int) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	resp := dnsmessage.Message{Header: dnsmessage.Header{
		ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired,
		// Go's resolver takes an empty NOERROR answer that is neither
		// authoritative nor recursive for a lame referral.
		Authoritative: true, RecursionAvailable: true,
	}}
	qs, err := p.AllQuestions()
	switch {
	case err != nil || len(qs) != 1:
		resp.RCode = dnsmessage.RCodeFormatError
		return pack(resp, max)
	case h.OpCode != 0:
		resp.RCode = dnsmessage.RCodeNotImplemented
		return pack(resp, max)
	}
	q := qs[0]
	resp.Questions = qs
	handler := f.handler(q.Name.String())
	switch {
	case handler == nil:
		resp.RCode = dnsmessage.RCodeNameError
	case q.Class != dnsmessage.ClassINET:
		resp.RCode = dnsmessage.RCodeRefused
	default:
		answers, tc, err := f.ask(ctx, handler, q)
		if err != nil {
			resp.RCode = dnsmessage.RCodeServerFailure
			f.logChange(q, "SERVFAIL "+err.Error())
			break
		}
		resp.Truncated = tc
		resp.Answers = answers
		f.logChange(q, summary(answers))
	}
	return pack(resp, max)
}

func pack(m dnsmessage.Message, max int) []byte {
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	if len(b) > max {
		m.Truncated, m.Answers = true, nil
		b, _ = m.Pack()
	}
	return b
}

// handler is the handler whose domain is name or a parent of it.
func (f *FrontEnd) handler(name string) *Handler {
	name = strings.ToLower(name)
	for i, h := range f.Handlers {
		if name == h.Domain || strings.HasSuffix(name, "."+h.Domain) {
			return &f.Handlers[i]
		}
	}
	return nil
}

// adapterAnswer is the part of bosh-dns-adapter's JSON bosh-dns reads.
type adapterAnswer struct {
	TC     bool
	Answer []struct {
		Name string `json:"name"`
		Type int    `json:"type"`
		TTL  uint32 `json:"TTL"`
		Data string `json:"data"`
	}
}

// ask asks the handler's source as bosh-dns does, GET
// <url>/?name=<fqdn>&type=<qtype>, and turns the A answers into records.
// Anything but a 200 with valid JSON is an error (SERVFAIL).
func (f *FrontEnd) ask(ctx context.Context, h *Handler, q dnsmessage.Question) ([]dnsmessage.Resource, bool, error) {
	client := f.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	u := strings.TrimRight(h.Source.URL, "/") + "/?" + url.Values{"name": {q.Name.String()}, "type": {strconv.Itoa(int(q.Type))}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, false, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("%s answered %d: %s", h.Source.URL, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var a adapterAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, false, fmt.Errorf("%s answered %q: %w", h.Source.URL, body, err)
	}
	var out []dnsmessage.Resource
	for _, ans := range a.Answer {
		ip, err := netip.ParseAddr(ans.Data)
		if ans.Type != int(dnsmessage.TypeA) || err != nil || !ip.Is4() {
			continue
		}
		name := q.Name
		if n, err := dnsmessage.NewName(FQDN(ans.Name)); err == nil && ans.Name != "" {
			name = n
		}
		out = append(out, dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: ans.TTL},
			Body:   &dnsmessage.AResource{A: ip.As4()},
		})
	}
	return out, a.TC, nil
}

func summary(answers []dnsmessage.Resource) string {
	if len(answers) == 0 {
		return "no records"
	}
	ips := make([]string, 0, len(answers))
	for _, a := range answers {
		if r, ok := a.Body.(*dnsmessage.AResource); ok {
			ips = append(ips, netip.AddrFrom4(r.A).String())
		}
	}
	// The adapter shuffles: sort for a stable log line.
	slices.Sort(ips)
	return strings.Join(ips, " ")
}

// logChange writes a line when the answer to a question differs from the
// last one logged: the frontend asks every few milliseconds.
func (f *FrontEnd) logChange(q dnsmessage.Question, answer string) {
	if f.Log == nil {
		return
	}
	key := strings.ToLower(q.Name.String()) + " " + strings.TrimPrefix(q.Type.String(), "Type")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == nil {
		f.last = map[string]string{}
	}
	if f.last[key] == answer {
		return
	}
	f.last[key] = answer
	fmt.Fprintf(f.Log, "%s %s → %s\n", time.Now().Format(time.RFC3339Nano), key, answer)
}

// Resolver asks one DNS server for A records over UDP (and TCP when the
// answer is truncated), without the host's resolv.conf or nsswitch.
type Resolver struct {
	Server  string        // ip or ip:port (53)
	Timeout time.Duration // per attempt; default 1 s
}

// ErrNoSuchHost is a name without A records (NXDOMAIN, or NOERROR with
// none: how the adapter answers an unknown name).
var ErrNoSuchHost = errors.New("no such host")

// LookupA returns name's IPv4 addresses.
func (r Resolver) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	server := r.Server
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	qname, err := dnsmessage.NewName(FQDN(name))
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, err)
	}
	id := uint16(rand.Uint32())
	query, err := (&dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: qname, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}).Pack()
	if err != nil {
		return nil, err
	}
	resp, err := exchange(ctx, "udp", server, query, timeout)
	if err == nil && resp.Truncated {
		resp, err = exchange(ctx, "tcp", server, query, timeout)
	}
	if err != nil {
		return nil, err
	}
	if resp.ID != id || len(resp.Questions) != 1 || !strings.EqualFold(resp.Questions[0].Name.String(), qname.String()) {
		return nil, errors.New("answer does not match the question")
	}
	switch resp.RCode {
	case dnsmessage.RCodeSuccess:
	case dnsmessage.RCodeNameError:
		return nil, ErrNoSuchHost
	default:
		return nil, fmt.Errorf("server answered %s", rcodeName(resp.RCode))
	}
	var out []netip.Addr
	for _, a := range resp.Answers {
		if r, ok := a.Body.(*dnsmessage.AResource); ok {
			out = append(out, netip.AddrFrom4(r.A))
		}
	}
	if len(out) == 0 {
		return nil, ErrNoSuchHost
	}
	return out, nil
}

func rcodeName(r dnsmessage.RCode) string {
	switch r {
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return r.String()
}

func exchange(ctx context.Context, network, server string, query []byte, timeout time.Duration) (*dnsmessage.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, network, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	var b []byte
	if network == "tcp" {
		if err = writeTCPMessage(conn, query); err == nil {
			b, err = readTCPMessage(conn)
		}
	} else if _, err = conn.Write(query); err == nil {
		buf := make([]byte, 65535)
		var n int
		n, err = conn.Read(buf)
		b = buf[:n]
	}
	if err != nil {
		return nil, err
	}
	var m dnsmessage.Message
	if err := m.Unpack(b); err != nil {
		return nil, err
	}
	return &m, nil
}
