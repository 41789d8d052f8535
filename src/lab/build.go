package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Binaries are what a lab runs from its bin directory: the control plane,
// the cell daemons (iptables-logger among them), the CNI chain, Garden's
// networker, and netman-lab
// itself (the apps, NATS, the route emitters and the DNS front ends are
// netman-lab subcommands).
var Binaries = []string{
	"silk-controller", "policy-server", "policy-server-internal", "policy-server-asg-syncer", "service-discovery-controller",
	"silk-daemon", "vxlan-policy-agent", "bosh-dns-adapter", "iptables-logger",
	"garden-external-networker", "cni-wrapper-plugin", "silk-cni",
	"netman-lab",
}

// ModuleRoot is the directory holding go.mod, searched upwards from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above %s", dir)
		}
		dir = parent
	}
}

// Build builds ./cmd/<name> for every name, static, into dir.
func Build(dir string, names ...string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", dir + "/"}
	for _, b := range names {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %v: %v\n%s", names, err, out)
	}
	return nil
}

// MissingBinaries lists the names not present (executable) in dir.
func MissingBinaries(dir string, names ...string) []string {
	var missing []string
	for _, n := range names {
		if st, err := os.Stat(filepath.Join(dir, n)); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	return missing
}
