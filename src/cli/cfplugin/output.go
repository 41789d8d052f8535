package cfplugin

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/netman-release/netman/src/cli/policyapi"
)

// styler adds upstream's ANSI styles when colours are on.
type styler struct{ on bool }

const (
	ansiReset = "\x1b[0m"
	ansiRed   = "\x1b[31;1m"
	ansiGreen = "\x1b[32;1m"
	ansiCyan  = "\x1b[36;1m"
	ansiBold  = "\x1b[;1m"
)

func (s styler) wrap(code, text string) string {
	if !s.on {
		return text
	}
	return code + text + ansiReset
}

func (s styler) red(t string) string   { return s.wrap(ansiRed, t) }
func (s styler) green(t string) string { return s.wrap(ansiGreen, t) }
func (s styler) cyan(t string) string  { return s.wrap(ansiCyan, t) }
func (s styler) bold(t string) string  { return s.wrap(ansiBold, t) }

// styler decides colours as the cf CLI does: CF_COLOR=true or false wins,
// else colours when Out is a terminal. (Upstream's plugin always coloured.)
func (p *Plugin) styler() styler {
	if p.Color != nil {
		return styler{on: *p.Color}
	}
	switch p.getenv("CF_COLOR") {
	case "true":
		return styler{on: true}
	case "false":
		return styler{on: false}
	}
	f, ok := p.Out.(*os.File)
	if !ok {
		return styler{}
	}
	fi, err := f.Stat()
	return styler{on: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

// renderTable aligns rows as upstream's tabwriter did (tab padding, width
// 8, padding 2); the first row is the header, shown bold, and the first two
// columns (app names) cyan. Styles are applied after alignment so escape
// codes do not count as width.
func renderTable(rows [][]string, st styler) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 8, 2, '\t', 0)
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = policyapi.Printable(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	_ = tw.Flush() // writes to a strings.Builder cannot fail
	if !st.on {
		return b.String()
	}
	lines := strings.SplitAfter(b.String(), "\n")
	var out strings.Builder
	for i, line := range lines {
		if line == "" {
			continue
		}
		if i == 0 {
			out.WriteString(st.bold(strings.TrimSuffix(line, "\n")) + "\n")
			continue
		}
		pos := 0
		for col := 0; col < 2 && col < len(rows[i]); col++ {
			cell := policyapi.Printable(rows[i][col])
			at := strings.Index(line[pos:], cell)
			if at < 0 {
				break
			}
			at += pos
			out.WriteString(line[pos:at])
			out.WriteString(st.cyan(cell))
			pos = at + len(cell)
		}
		out.WriteString(line[pos:])
	}
	return out.String()
}

// tracer dumps requests and answers when CF_TRACE=true, as the cf CLI and
// upstream's plugin do, with the token hidden.
type tracer struct {
	next http.RoundTripper
	out  io.Writer
	mu   sync.Mutex
}

const hidden = "[PRIVATE DATA HIDDEN]"

func (t *tracer) RoundTrip(req *http.Request) (*http.Response, error) {
	shown := req.Clone(req.Context())
	if shown.Header.Get("Authorization") != "" {
		shown.Header.Set("Authorization", hidden)
	}
	var reqDump []byte
	if req.GetBody != nil {
		if body, err := req.GetBody(); err == nil {
			shown.Body = body
			reqDump, _ = httputil.DumpRequestOut(shown, true)
		}
	} else {
		reqDump, _ = httputil.DumpRequestOut(shown, false)
	}
	t.print("REQUEST", reqDump)
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.print("RESPONSE", []byte(err.Error()))
		return nil, err
	}
	respDump, _ := httputil.DumpResponse(resp, true)
	t.print("RESPONSE", respDump)
	return resp, nil
}

func (t *tracer) print(kind string, dump []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.out, "\n%s: [%s]\n%s\n", kind, time.Now().Format(time.RFC3339), strings.TrimRight(string(dump), "\r\n"))
}
