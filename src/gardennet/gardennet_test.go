package gardennet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/testsupport/configtest"
)

// runMain runs Main in-process.
func runMain(args []string, stdin string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(context.Background(), append([]string{"garden-external-networker"}, args...), strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

func TestMainErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := validConfig()
	cfg["cni_config_dir"] = dir
	cfg["cni_plugin_dir"] = dir
	cfg["bind_mount_dir"] = filepath.Join(dir, "netns")
	cfg["state_file"] = filepath.Join(dir, "state.json")
	good := configtest.Write(t, "adapter.json", cfg)
	noPrefix := validConfig()
	delete(noPrefix, "log_prefix")
	missingPluginDir := validConfig()
	delete(missingPluginDir, "cni_plugin_dir")
	noCNIDir := validConfig()
	noCNIDir["cni_config_dir"] = filepath.Join(dir, "nope")
	noCNIDirPath := configtest.Write(t, "adapter.json", noCNIDir)

	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		stderr string // a line of stderr
	}{
		{"no args", nil, "", "cfnetworking: this is a plugin for Garden-runC.  Don't run it directly."},
		{"-h", []string{"-h"}, "", "cfnetworking: this is a plugin for Garden-runC.  Don't run it directly."},
		{"--help", []string{"--help", "--action=up"}, "", "cfnetworking: this is a plugin for Garden-runC.  Don't run it directly."},
		{"unknown flag", []string{"--action=up", "--handle=h", "--configFile=" + good, "--banana"}, "",
			"cfnetworking: parse args: flag provided but not defined: -banana"},
		{"no configFile", []string{"--action=up", "--handle=h"}, "", "cfnetworking: parse args: missing required flag 'configFile'"},
		{"missing config file", []string{"--action=up", "--handle=h", "--configFile", filepath.Join(dir, "x.json")}, "",
			"cfnetworking: parse args: file does not exist: stat " + dir + "/x.json: no such file or directory"},
		{"missing config key uses the config's prefix", []string{"-action", "up", "-handle", "h", "-configFile", configtest.Write(t, "adapter.json", missingPluginDir)}, "",
			"prefix: parse args: missing required config 'cni_plugin_dir'"},
		{"missing log_prefix", []string{"--action=up", "--handle=h", "--configFile=" + configtest.Write(t, "adapter.json", noPrefix)}, "",
			"cfnetworking: parse args: missing required config 'log_prefix'"},
		{"extra args", []string{"--action=up", "--handle=h", "--configFile=" + good, "something-else"}, "",
			"prefix: parse args: unexpected extra args: [something-else]"},
		{"no handle", []string{"--action=up", "--configFile=" + good}, "", "prefix: parse args: missing required flag 'handle'"},
		{"no action", []string{"--handle=h", "--configFile=" + good}, "", "prefix: parse args: missing required flag 'action'"},
		{"cni config dir missing", []string{"--action=up", "--handle=h", "--configFile=" + noCNIDirPath}, "",
			"prefix: load cni config: error loading config: lstat " + dir + "/nope: no such file or directory"},
		{"unrecognized action", []string{"--action=net-out", "--handle=h", "--configFile=" + good}, "{}",
			"prefix: unrecognized action: net-out"},
		{"bad stdin", []string{"--action=up", "--handle=h", "--configFile=" + good}, "{{{bad",
			"prefix: invalid character '{' looking for beginning of object key string"},
		{"non-integer pid", []string{"--action=up", "--handle=h", "--configFile=" + good}, `{"pid":"x"}`,
			"prefix: json: cannot unmarshal string into Go struct field UpInputs.Pid of type int"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runMain(tc.args, tc.stdin)
			if code != 1 || stdout != "" {
				t.Errorf("exit %d, stdout %q", code, stdout)
			}
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if last := lines[len(lines)-1]; last != tc.stderr {
				t.Errorf("stderr %q\nwant last line %q", stderr, tc.stderr)
			}
		})
	}
}

func TestMainDownWithoutConfigFiles(t *testing.T) {
	// No CNI config: down has nothing to delete and still cleans up; up
	// fails the way upstream's does.
	dir := t.TempDir()
	cfg := validConfig()
	cfg["cni_config_dir"] = dir
	cfg["bind_mount_dir"] = filepath.Join(dir, "netns")
	cfg["state_file"] = filepath.Join(dir, "state.json")
	path := configtest.Write(t, "adapter.json", cfg)
	for range 2 {
		if code, stdout, stderr := runMain([]string{"--action", "down", "--handle", "h", "--configFile", path}, "null"); code != 0 || stdout != "" || stderr != "" {
			t.Fatalf("down: %d %q %q", code, stdout, stderr)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "state.json")); err != nil || len(b) != 0 {
		t.Errorf("state file after down of an unknown handle: %q %v", b, err)
	}
}
