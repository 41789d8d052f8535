package external

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"
)

// TestTokensFileNoticeIsNoError: the tokens-file notice keeps its name but
// is an info line, so that a lab's log shows no failure where none is.
func TestTokensFileNoticeIsNoError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(path, []byte(`{"lab-admin": {"user_name": "admin", "scopes": ["network.admin"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var lines []string
	logger := lager.NewLogger("policy-server")
	logger.RegisterSink(lager.NewWriterSink(writerFunc(func(p []byte) {
		var l struct {
			Level   lager.LogLevel `json:"log_level"`
			Message string         `json:"message"`
			Data    map[string]any `json:"data"`
		}
		if err := json.Unmarshal(p, &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l.Level.String()+" "+l.Message+" "+l.Data["users"].(string))
		if w, _ := l.Data["warning"].(string); w == "" {
			t.Errorf("%s: no warning in its data: %v", l.Message, l.Data)
		}
	}), lager.DEBUG))
	if _, _, _, _, err := outbound(logger, Config{AuthTokensFile: path}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"info policy-server.insecure-auth-tokens-file admin"}, lines); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }
