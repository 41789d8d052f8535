package iptableslogger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/metadata"
)

// benchLines is a cell's kernel log with logging on: C2C and ASG lines of
// every kind, about a quarter of them for containers the store does not
// know, and one unrelated kernel message in ten.
var benchLines = func() []string {
	var out []string
	for i := range 100 {
		var l string
		switch i % 10 {
		case 0:
			l = fmt.Sprintf("Nov 23 10:00:%02d cell-7 kernel: [12345.%06d] eth0: renamed from veth%d", i%60, i, i)
		case 1, 2, 3:
			l = strings.Replace(syslogIngressAllowedTCP, "DST=10.255.18.2", fmt.Sprintf("DST=10.255.18.%d", 2+i%250), 1)
		case 4:
			l = syslogIngressDeniedTCP
		case 5, 6:
			l = strings.Replace(syslogEgressAllowedTCP, "SRC=10.255.18.2", fmt.Sprintf("SRC=10.255.18.%d", 2+i%250), 1)
		case 7:
			l = syslogEgressDeniedUDP
		case 8:
			l = syslogEgressDeniedICMP
		default:
			l = kmsgIngressAllowedTCP // unknown container
		}
		out = append(out, l)
	}
	return out
}()

// benchStore is a full cell: 250 containers on 10.255.18.0/24.
func benchStore(b *testing.B) *metadata.Store {
	b.Helper()
	s := metadata.New(filepath.Join(b.TempDir(), "store.json"))
	for i := range 250 {
		if err := s.Add(context.Background(), fmt.Sprintf("handle-%04d-5e6f-4a7b-8c9d", i), fmt.Sprintf("10.255.18.%d", 2+i),
			map[string]any{"app_id": fmt.Sprintf("app-%d", i), "space_id": "space", "org_id": "org", "policy_group_id": "pg",
				metadata.LogConfigKey: fmt.Sprintf(`{"guid":"app-%d","index":0,"source_name":"CELL","tags":{"app_name":"app-%d","space_name":"dev","organization_name":"acme"}}`, i, i)}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func benchOutput(b *testing.B) *Output {
	b.Helper()
	o, err := OpenOutput(filepath.Join(b.TempDir(), "iptables.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { o.Close() })
	return o
}

func reportLines(b *testing.B, lines int) {
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(syslogIngressAllowedTCP); err != nil {
			b.Fatal(err)
		}
	}
	reportLines(b, b.N)
}

func BenchmarkAppendEvent(b *testing.B) {
	p, _ := Parse(syslogIngressAllowedTCP)
	c := Container{ContainerID: "9b2f1c3a-4d5e-4f60-8a7b-1c2d3e4f5a6b", AppGUID: "2a0f6b8e-app", SpaceGUID: "7c1d-space", OrganizationGUID: "org-3e4f", HostIP: "10.0.16.5", HostGUID: "cell-guid-1"}
	buf := make([]byte, 0, 1024)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEvent(buf[:0], now, TimestampRFC3339, p, c)
	}
}

// BenchmarkProcessor is the logger's work per kernel log line once read:
// filter, parse, look the container up, encode, and append to the output
// file, with the reader catching up (and so flushing) every 100 lines.
func BenchmarkProcessor(b *testing.B) {
	ctx := context.Background()
	p := NewProcessor(lager.NewLogger("bench"), NewContainers(benchStore(b), "10.0.16.5", "cell-guid"), benchOutput(b), TimestampRFC3339, nil, nil)
	lines := make([][]byte, len(benchLines))
	for i, l := range benchLines {
		lines[i] = []byte(l)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		p.Line(ctx, lines[n%len(lines)])
		n++
		if n%len(lines) == 0 {
			p.Flush()
		}
	}
	p.Flush()
	reportLines(b, n)
}

// BenchmarkUpstreamStyle does the same work the way upstream does: a map of
// every KEY=VALUE per line, a metadata store read (version check) and scan
// per line, and a lager sink writing each event with its own write.
func BenchmarkUpstreamStyle(b *testing.B) {
	ctx := context.Background()
	store := benchStore(b)
	out := benchOutput(b)
	logger := lager.NewLogger(Source)
	logger.RegisterSink(lager.NewPrettySink(out, lager.DEBUG))
	lines := benchLines
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		line := lines[n%len(lines)]
		n++
		if !strings.Contains(line, "OK_") && !strings.Contains(line, "DENY_") {
			continue
		}
		p := referenceParse(line)
		ip, key := p.SrcIP, "source"
		if p.Direction == Ingress {
			ip, key = p.DstIP, "destination"
		}
		pool, err := store.ReadAll(ctx)
		if err != nil {
			b.Fatal(err)
		}
		c := Container{HostIP: "10.0.16.5", HostGUID: "cell-guid"}
		for _, e := range pool {
			if e.IP == ip {
				c.ContainerID, c.AppGUID = e.Handle, metaString(e.Metadata, "app_id")
				c.SpaceGUID, c.OrganizationGUID = metaString(e.Metadata, "space_id"), metaString(e.Metadata, "org_id")
				break
			}
		}
		action := strings.TrimPrefix(Message(p), Source+".")
		logger.Info(action, lager.Data{key: c, "packet": p})
	}
	reportLines(b, n)
}

// BenchmarkFileTail is end to end through a kernel log file: lines appended
// to the file in 64 KiB writes, read by the file tailer, processed and
// written to the output file.
func BenchmarkFileTail(b *testing.B) {
	dir := b.TempDir()
	kernelLog := filepath.Join(dir, "kern.log")
	if err := os.WriteFile(kernelLog, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	tl, err := OpenKernelLog(kernelLog, time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	defer tl.Close()
	p := NewProcessor(lager.NewLogger("bench"), NewContainers(benchStore(b), "10.0.16.5", "cell-guid"), benchOutput(b), TimestampRFC3339, nil, nil)
	var chunk []byte
	for len(chunk) < 64<<10-1024 {
		for _, l := range benchLines {
			chunk = append(chunk, l...)
			chunk = append(chunk, '\n')
		}
	}
	perChunk := strings.Count(string(chunk), "\n")
	w, err := os.OpenFile(kernelLog, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()

	chunks := (b.N + perChunk - 1) / perChunk
	ctx, cancel := context.WithCancel(context.Background())
	h := &countUntil{Processor: p, want: chunks * perChunk, done: cancel}
	b.ResetTimer()
	go func() {
		for range chunks {
			if _, err := w.Write(chunk); err != nil {
				panic(err)
			}
		}
	}()
	if err := tl.Run(ctx, h); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if h.n < h.want {
		b.Fatalf("read %d of %d lines", h.n, h.want)
	}
	reportLines(b, h.n)
}

type countUntil struct {
	*Processor
	n, want int
	done    func()
}

func (c *countUntil) Line(ctx context.Context, line []byte) {
	c.n++
	c.Processor.Line(ctx, line)
}

func (c *countUntil) Flush() {
	c.Processor.Flush()
	if c.n >= c.want {
		c.done()
	}
}
