// Command silk-cni is the CNI plugin cni-wrapper-plugin delegates to: it
// wires a container into the cell's silk overlay lease. See docs/silk-cni.md.
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/netman-release/netman/src/silk/cni"
)

func main() {
	logger, closeLog := cni.NewLogger(cni.LogFile, cni.DebugMarker)
	plugin := &cni.Plugin{Logger: logger}
	err := skel.PluginMainFuncsWithError(plugin.Funcs(), cni.VersionInfo(), "CNI Plugin silk-cni")
	closeLog()
	if err != nil {
		if printErr := err.Print(); printErr != nil {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
