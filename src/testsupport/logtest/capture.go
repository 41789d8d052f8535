package logtest

import (
	"bufio"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"code.cloudfoundry.org/lager/v3"
)

// Line is one lager line as operators' tools see it: the full message
// ("<component>.<session>.<message>"), the level name and the data.
type Line struct {
	Message string
	Level   string
	Data    map[string]any
}

// Capture is a lager sink that keeps every line, for tests that pin a
// component's log vocabulary.
type Capture struct {
	mu    sync.Mutex
	lines []Line
}

// NewCapture returns a debug-level logger named component whose lines are
// kept by the returned Capture (and also written to tb.Log).
func NewCapture(tb testing.TB, component string) (lager.Logger, *Capture) {
	c := &Capture{}
	logger := lager.NewLogger(component)
	logger.RegisterSink(c)
	w := &writer{tb: tb}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	logger.RegisterSink(lager.NewWriterSink(w, lager.DEBUG))
	return logger, c
}

// Log implements lager.Sink.
func (c *Capture) Log(l lager.LogFormat) {
	// Round-trip the data through JSON so tests compare what is written
	// (numbers as float64, structs as maps), not Go values.
	var data map[string]any
	if b, err := json.Marshal(l.Data); err == nil {
		_ = json.Unmarshal(b, &data)
	}
	c.mu.Lock()
	c.lines = append(c.lines, Line{Message: l.Message, Level: levelName(l.LogLevel), Data: data})
	c.mu.Unlock()
}

// Lines is every line so far, in order.
func (c *Capture) Lines() []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines)
}

// Find is the lines with exactly this message.
func (c *Capture) Find(message string) []Line { return filter(c.Lines(), message) }

// Messages is the message of every line so far, in order.
func (c *Capture) Messages() []string { return messages(c.Lines()) }

// ParseJSON decodes the lager JSON lines of a process's output (lines that
// are not JSON objects, such as a stderr message, are skipped).
func ParseJSON(tb testing.TB, out string) []Line {
	tb.Helper()
	var lines []Line
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		raw := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(raw, "{") {
			continue
		}
		var l struct {
			Message string          `json:"message"`
			Level   json.RawMessage `json:"level"`
			Data    map[string]any  `json:"data"`
		}
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			tb.Fatalf("log line %q is not JSON: %v", raw, err)
		}
		var level string
		if err := json.Unmarshal(l.Level, &level); err != nil {
			tb.Fatalf("log line %q has no level name: %v", raw, err)
		}
		lines = append(lines, Line{Message: l.Message, Level: level, Data: l.Data})
	}
	return lines
}

// FindIn is the lines with exactly this message.
func FindIn(lines []Line, message string) []Line { return filter(lines, message) }

// MessagesIn is the message of every line, in order.
func MessagesIn(lines []Line) []string { return messages(lines) }

func filter(lines []Line, message string) []Line {
	var out []Line
	for _, l := range lines {
		if l.Message == message {
			out = append(out, l)
		}
	}
	return out
}

func messages(lines []Line) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Message
	}
	return out
}

func levelName(l lager.LogLevel) string {
	switch l {
	case lager.DEBUG:
		return "debug"
	case lager.INFO:
		return "info"
	case lager.ERROR:
		return "error"
	case lager.FATAL:
		return "fatal"
	}
	return "unknown"
}
