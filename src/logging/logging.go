// Package logging builds the lager loggers every netman daemon uses, with the
// same component names, JSON shape and level handling as upstream's
// lagerflags-based daemons, so log parsing and operator tooling carry over.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"code.cloudfoundry.org/lager/v3"
)

// DefaultPrefix is the log prefix upstream cf-networking and silk daemons use
// when their config does not set one.
const DefaultPrefix = "cfnetworking"

// New builds a logger named "<prefix>.<component>" (e.g.
// "cfnetworking.silk-controller") writing one JSON object per line with
// RFC3339 timestamps to w (os.Stdout when nil). The returned sink gates the
// level and is what the debug server's /log-level endpoint reconfigures.
//
// An empty prefix means DefaultPrefix; an empty level means "info".
func New(prefix, component, level string, w io.Writer) (lager.Logger, *lager.ReconfigurableSink, error) {
	if component == "" {
		return nil, nil, fmt.Errorf("logging: component name is empty")
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	minLevel := lager.INFO
	if level != "" {
		var err error
		minLevel, err = ParseLevel(level)
		if err != nil {
			return nil, nil, err
		}
	}
	if w == nil {
		w = os.Stdout
	}

	// The inner sink passes everything; the reconfigurable sink is the only
	// gate, so a runtime level change takes effect immediately.
	sink := lager.NewReconfigurableSink(lager.NewPrettySink(w, lager.DEBUG), minLevel)
	logger := lager.NewLogger(prefix + "." + component)
	logger.RegisterSink(sink)
	return logger, sink, nil
}

// ParseLevel parses a lager level: "debug", "info", "error" or "fatal" in any
// case, their numeric values "0".."3", or the single letters "d", "i", "e",
// "f" — everything upstream's debug server accepts. Surrounding whitespace is
// ignored so `echo debug | curl --data-binary @-` works.
func ParseLevel(s string) (lager.LogLevel, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug", "d", "0":
		return lager.DEBUG, nil
	case "info", "i", "1":
		return lager.INFO, nil
	case "error", "e", "2":
		return lager.ERROR, nil
	case "fatal", "f", "3":
		return lager.FATAL, nil
	}
	return 0, fmt.Errorf("unknown log level %q: want debug, info, error or fatal (or 0-3)", s)
}
