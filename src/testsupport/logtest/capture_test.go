package logtest_test

import (
	"bytes"
	"errors"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/logtest"
)

func TestCaptureAndParseAgree(t *testing.T) {
	logger, c := logtest.NewCapture(t, "cfnetworking.x")
	var out bytes.Buffer
	logger.RegisterSink(lager.NewPrettySink(&out, lager.DEBUG))

	logger.Info("starting")
	logger.Session("poller").Error("poll-cycle", errors.New("boom"))
	logger.Debug("got-containers", lager.Data{"n": 2, "s": struct{ Handle string }{"h"}})

	want := []logtest.Line{
		{Message: "cfnetworking.x.starting", Level: "info"},
		{Message: "cfnetworking.x.poller.poll-cycle", Level: "error", Data: map[string]any{"error": "boom", "session": "1"}},
		{Message: "cfnetworking.x.got-containers", Level: "debug", Data: map[string]any{"n": 2.0, "s": map[string]any{"Handle": "h"}}},
	}
	// lager omits empty data in JSON; the capture keeps it as an empty map.
	norm := func(ls []logtest.Line) []logtest.Line {
		for i := range ls {
			if len(ls[i].Data) == 0 {
				ls[i].Data = nil
			}
		}
		return ls
	}
	if diff := cmp.Diff(want, norm(c.Lines())); diff != "" {
		t.Errorf("captured (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, norm(logtest.ParseJSON(t, "not json\n"+out.String()))); diff != "" {
		t.Errorf("parsed (-want +got):\n%s", diff)
	}
	if got := logtest.MessagesIn(c.Find("cfnetworking.x.starting")); len(got) != 1 {
		t.Errorf("Find = %v", got)
	}
}
