// network-policy-plugin is the cf CLI plugin "network-policy" (allow-access,
// remove-access, list-access). Install it with
// `cf install-plugin bin/network-policy-plugin`; it is not meant to be run
// on its own.
package main

import (
	"code.cloudfoundry.org/cli/plugin"

	"github.com/netman-release/netman/src/cli/cfplugin"
)

func main() {
	plugin.Start(cfplugin.New())
}
