package cniwrapper

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"
)

// execDelegate runs the delegate plugin binary found in CNI_PATH with this
// process's CNI_* environment and CNI_COMMAND set to the verb, as libcni's
// invoke.Delegate* do (done here to keep invoke's tracing dependencies out
// of the binary).
type execDelegate struct{}

func (execDelegate) Add(ctx context.Context, pluginType string, netconf []byte) (types.Result, error) {
	out, err := execPlugin(ctx, pluginType, "ADD", netconf)
	if err != nil {
		return nil, err
	}
	return create.CreateFromBytes(out)
}

func (execDelegate) Del(ctx context.Context, pluginType string, netconf []byte) error {
	_, err := execPlugin(ctx, pluginType, "DEL", netconf)
	return err
}

func execPlugin(ctx context.Context, pluginType, verb string, netconf []byte) ([]byte, error) {
	path, err := findInPath(pluginType, filepath.SplitList(os.Getenv("CNI_PATH")))
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = append(withoutEnv(os.Environ(), "CNI_COMMAND"), "CNI_COMMAND="+verb)
	cmd.Stdin = bytes.NewReader(netconf)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func findInPath(plugin string, paths []string) (string, error) {
	if plugin == "" || strings.ContainsRune(plugin, os.PathSeparator) {
		return "", fmt.Errorf("invalid plugin name %q", plugin)
	}
	if len(paths) == 0 {
		return "", fmt.Errorf("no paths provided")
	}
	for _, dir := range paths {
		p := filepath.Join(dir, plugin)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("failed to find plugin %q in path %s", plugin, paths)
}

func withoutEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// pluginError turns a failed run into the plugin's CNI error when it printed
// one, else a message with its stderr.
func pluginError(err error, stdout, stderr []byte) error {
	e := &types.Error{}
	switch {
	case len(stdout) > 0 && json.Unmarshal(stdout, e) == nil && e.Msg != "":
		return e
	case len(stdout) > 0:
		return fmt.Errorf("netplugin failed but error parsing its diagnostic message %q: %w", stdout, err)
	case len(stderr) > 0:
		return fmt.Errorf("netplugin failed: %q: %w", stderr, err)
	}
	return fmt.Errorf("netplugin failed with no error message: %w", err)
}
