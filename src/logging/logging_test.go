package logging_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/logging"
)

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in   string
		want lager.LogLevel
	}{
		{"debug", lager.DEBUG},
		{"DEBUG", lager.DEBUG},
		{"Debug", lager.DEBUG},
		{"d", lager.DEBUG},
		{"0", lager.DEBUG},
		{"info", lager.INFO},
		{"INFO", lager.INFO},
		{"1", lager.INFO},
		{"error", lager.ERROR},
		{"ErRoR", lager.ERROR},
		{"2", lager.ERROR},
		{"fatal", lager.FATAL},
		{"FATAL", lager.FATAL},
		{"3", lager.FATAL},
		{" debug\n", lager.DEBUG},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := logging.ParseLevel(tt.in)
			if err != nil {
				t.Fatalf("ParseLevel(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseLevel(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseLevelRejects(t *testing.T) {
	for _, in := range []string{"", "warn", "4", "-1", "debugx", "10"} {
		t.Run(in, func(t *testing.T) {
			_, err := logging.ParseLevel(in)
			if err == nil {
				t.Fatalf("ParseLevel(%q) succeeded, want error", in)
			}
			if !strings.Contains(err.Error(), `"`+in+`"`) {
				t.Errorf("error %q does not name the level %q", err, in)
			}
		})
	}
}

type line struct {
	Timestamp string         `json:"timestamp"`
	Level     string         `json:"level"`
	Source    string         `json:"source"`
	Message   string         `json:"message"`
	Data      map[string]any `json:"data"`
}

func decodeLines(t *testing.T, b []byte) []line {
	t.Helper()
	var out []line
	for _, raw := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		var l line
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", raw, err)
		}
		out = append(out, l)
	}
	return out
}

func TestNewFormatAndName(t *testing.T) {
	var buf bytes.Buffer
	logger, _, err := logging.New("cfnetworking", "silk-controller", "info", &buf)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("acquired-lease", lager.Data{"lease": "10.255.1.0/24"})
	logger.Error("renew-lease", errors.New("boom"))

	lines := decodeLines(t, buf.Bytes())
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2: %s", len(lines), buf.String())
	}
	for i := range lines {
		if _, err := time.Parse(time.RFC3339Nano, lines[i].Timestamp); err != nil {
			t.Errorf("timestamp %q is not RFC3339: %v", lines[i].Timestamp, err)
		}
		lines[i].Timestamp = "" // checked above; varies
	}
	want := []line{
		{Level: "info", Source: "cfnetworking.silk-controller", Message: "cfnetworking.silk-controller.acquired-lease",
			Data: map[string]any{"lease": "10.255.1.0/24"}},
		{Level: "error", Source: "cfnetworking.silk-controller", Message: "cfnetworking.silk-controller.renew-lease",
			Data: map[string]any{"error": "boom"}},
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
}

func TestNewLevels(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		level  string
		want   []string // messages that get through
	}{
		{"empty level means info", "p", "", []string{"p.c.info", "p.c.error"}},
		{"debug", "p", "debug", []string{"p.c.debug", "p.c.info", "p.c.error"}},
		{"upper case error", "p", "ERROR", []string{"p.c.error"}},
		{"numeric fatal", "p", "3", nil},
		{"empty prefix is cfnetworking", "", "info", []string{"cfnetworking.c.info", "cfnetworking.c.error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger, _, err := logging.New(tt.prefix, "c", tt.level, &buf)
			if err != nil {
				t.Fatal(err)
			}
			logger.Debug("debug")
			logger.Info("info")
			logger.Error("error", errors.New("e"))
			var got []string
			for _, l := range decodeLines(t, buf.Bytes()) {
				got = append(got, l.Message)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewSinkIsReconfigurable(t *testing.T) {
	var buf bytes.Buffer
	logger, sink, err := logging.New("cfnetworking", "vxlan-policy-agent", "info", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if sink.GetMinLevel() != lager.INFO {
		t.Fatalf("initial level = %v, want info", sink.GetMinLevel())
	}
	logger.Debug("hidden")
	sink.SetMinLevel(lager.DEBUG)
	logger.Debug("shown")
	lines := decodeLines(t, buf.Bytes())
	if len(lines) != 1 || lines[0].Message != "cfnetworking.vxlan-policy-agent.shown" {
		t.Errorf("got %+v, want only the debug line logged after the level change", lines)
	}
}

func TestNewErrors(t *testing.T) {
	if _, _, err := logging.New("p", "c", "verbose", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "verbose") {
		t.Errorf("bad level: err = %v, want one naming %q", err, "verbose")
	}
	if _, _, err := logging.New("p", "", "info", &bytes.Buffer{}); err == nil {
		t.Error("empty component: want error")
	}
}
