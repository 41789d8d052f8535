package cni

import (
	"io"
	"os"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
)

// Upstream's log locations: the plugin appends to the job's log file, at
// debug level when the operator dropped the enable_debug marker.
const (
	LogFile     = "/var/vcap/sys/log/silk-cni/silk-cni.stdout.log"
	DebugMarker = "/var/vcap/jobs/silk-cni/config/enable_debug"
)

// NewLogger builds the plugin's logger: lager pretty JSON, logger
// "cfnetworking", session "silk-cni" tagged with a random cni-request-id,
// as upstream. Logging is best effort: when the log file cannot be opened
// (not a BOSH cell, or the job's log directory is missing) the plugin runs
// silently rather than failing the container; stdout belongs to the CNI
// protocol and is never used. The returned func closes the file.
func NewLogger(logFile, debugMarker string) (lager.Logger, func()) {
	var w io.Writer = io.Discard
	closeFn := func() {}
	if logFile != "" {
		if f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
			w = f
			closeFn = func() { _ = f.Close() }
		}
	}
	level := lager.INFO
	if debugMarker != "" {
		if _, err := os.Stat(debugMarker); err == nil {
			level = lager.DEBUG
		}
	}
	logger := lager.NewLogger("cfnetworking")
	logger.RegisterSink(lager.NewReconfigurableSink(lager.NewPrettySink(w, level), level))
	return logger.Session("silk-cni", lager.Data{"cni-request-id": uuid.NewString()}), closeFn
}
