package observe

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netman-release/netman/src/testsupport/testtier"
)

// envRequireBrowser makes a missing Chromium fail the browser test (CI
// fails it anyway).
const envRequireBrowser = "NETMAN_REQUIRE_BROWSER"

// chromium runs Debian's headless Chromium with args and url, in a
// profile of its own, and returns its stdout.
func chromium(t *testing.T, url string, args ...string) []byte {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		testtier.Unavailable(t, "chromium is not installed (apt-get install chromium; scripts/test installs it as root)", envRequireBrowser)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=15000",
	}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// TestUIInChromium loads the page in a real headless Chromium: the script
// draws the graph, opens the backend's panel (#app=) and runs a trace
// (#trace=); the rendered DOM must show them, and a screenshot of the
// page is kept in the test's artifacts (go test -artifacts). The panel's
// flows come from a cell agent's flow endpoint over an iptables-logger
// flow log: the allowed flow is there from the start, the denied one is
// written after the page's first read and shows only because the panel
// refreshes itself. The per-app metrics of the cell's agent add counters.
func TestUIInChromium(t *testing.T) {
	ui, srv := uiLab(t)
	ui.Activity = []ActivitySource{liveFlowLog(t), CellMetrics{fakeMetricsCell{name: "10.244.0.12:8721", text: strings.ReplaceAll(agentMetrics, `app_guid="b"`, `app_guid="`+back.GUID+`"`)}}}
	url := srv.URL + "/#app=" + back.GUID + "&trace=" + front.GUID + "," + back.GUID + ",tcp,8080"

	dom := string(chromium(t, url, "--dump-dom"))
	for _, want := range []string{
		`data-ready="1"`, // the script ran to the end
		`class="app selected" data-guid="` + back.GUID, // the graph is drawn, backend selected
		`data-app="` + back.GUID + `">backend</h2>`,    // its panel
		`<li>frontend: tcp 8080</li>`,                  // reached by the frontend
		`<td>10.255.12.2</td>`,                         // its instance
		`data-verdict="allowed">ALLOWED</p>`,           // the trace
		`<td>frontend → backend</td><td>tcp 8080</td><td class="ok">allowed</td><td>273 / 1268</td>`,       // the allowed flow
		`<li class="fail">frontend → backend tcp 8080 <span class="muted">2026-12-06 17:41:00</span></li>`, // the denied one, after a refresh
		`<td>flows denied</td><td>1</td>`,                                                         // the flow source's counters
		`<b>per-app metrics (vxlan-policy-agent)</b>`, `<td>connections in denied</td><td>3</td>`, // the agents' series
		`2 apps, 1 connections`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	shot := filepath.Join(t.ArtifactDir(), "netman-ui.png")
	chromium(t, url, "--window-size=1280,900", "--screenshot="+shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Errorf("screenshot is %v, want 1280x900", b)
	}
	// The header bar is drawn: its colour (#1f3b5c) at the top left.
	if r, g, b, _ := img.At(5, 5).RGBA(); r>>8 != 0x1f || g>>8 != 0x3b || b>>8 != 0x5c {
		t.Errorf("pixel (5,5) is %02x%02x%02x, want the header's 1f3b5c", r>>8, g>>8, b>>8)
	}
	t.Logf("screenshot: %s", shot)
}

// liveFlowLog is the flow source of the page test: one cell's agent debug
// server (FlowsHandler) over a flow log holding an allowed flow from the
// frontend to the backend; after the first read, iptables-logger "writes"
// a denied one.
func liveFlowLog(t *testing.T) CellFlows {
	t.Helper()
	path := writeFlowLog(t, flowLine("2026-12-06T17:40:57Z", FlowAllowedMessage, front.GUID, back.GUID, "10.255.11.2", "10.255.12.2", 8080, 273, 1268))
	flows := FlowsHandler(path)
	var once sync.Once
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flows.ServeHTTP(w, r)
		once.Do(func() {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err == nil {
				_, err = f.WriteString(flowLine("2026-12-06T17:41:00Z", FlowDeniedMessage, front.GUID, back.GUID, "10.255.11.2", "10.255.12.2", 8080, 60, 0) + "\n")
				f.Close()
			}
			if err != nil {
				t.Error(err)
			}
		})
	}))
	t.Cleanup(agent.Close)
	return CellFlows{NewAgentDebug(agent.URL, 5*time.Second)}
}
