package cni

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/netman-release/netman/src/testsupport/logtest"
)

// A failed step is logged under upstream's message for it, in the
// plugin-add session of cfnetworking.silk-cni.
func TestFailedStepLogsUpstreamsMessage(t *testing.T) {
	logger, capture := logtest.NewCapture(t, "cfnetworking")
	p := &Plugin{Logger: logger.Session("silk-cni")}
	dir := t.TempDir()
	conf := fmt.Appendf(nil, `{"cniVersion":"1.0.0","name":"silk","type":"silk-cni","daemonPort":1,"dataDir":%q,"datastore":%q}`,
		filepath.Join(dir, "ipam"), filepath.Join(dir, "store.json"))
	args := &skel.CmdArgs{ContainerID: "c1", Netns: filepath.Join(dir, "no-such-netns"), IfName: "eth0", StdinData: conf}
	if _, err := p.Add(context.Background(), args); err == nil {
		t.Fatal("ADD into a missing namespace succeeded")
	}
	lines := capture.Find("cfnetworking.silk-cni.plugin-add.create-config-failed")
	if len(lines) != 1 || lines[0].Level != "error" || lines[0].Data["error"] == "" {
		t.Errorf("lines = %+v, want one create-config-failed error", capture.Lines())
	}
}
