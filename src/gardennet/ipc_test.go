package gardennet

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// stubNetworker records what Handle decoded.
type stubNetworker struct {
	in   UpInputs
	down string
}

func (s *stubNetworker) Up(_ context.Context, _ string, in UpInputs) (*UpOutputs, error) {
	s.in = in
	return &UpOutputs{}, nil
}

func (s *stubNetworker) Down(_ context.Context, handle string) error {
	s.down = handle
	return nil
}

func TestHandleDecodesBothSpellings(t *testing.T) {
	for _, stdin := range []string{
		`{"Pid": 12, "Properties": {"app_id": "a", "log_config": "{\"guid\":\"a\"}"}}`,
		`{"pid": 12, "properties": {"app_id": "a", "log_config": "{\"guid\":\"a\"}"}}`,
	} {
		s := &stubNetworker{}
		if err := Handle(context.Background(), s, "up", "h", strings.NewReader(stdin), &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		want := UpInputs{Pid: 12, Properties: map[string]any{"app_id": "a", "log_config": `{"guid":"a"}`}}
		if diff := cmp.Diff(want, s.in); diff != "" {
			t.Errorf("%s (-want +got):\n%s", stdin, diff)
		}
	}
}

func TestHandleErrors(t *testing.T) {
	for _, tc := range []struct {
		action, handle, stdin, err string
	}{
		{"up", "h", "{{{bad", "invalid character '{' looking for beginning of object key string"},
		{"up", "h", `{"pid": "not-a-number"}`, "json: cannot unmarshal string into Go struct field UpInputs.Pid of type int"},
		{"up", "h", ``, "EOF"},
		{"net-in", "h", `{}`, "unrecognized action: net-in"},
		{"up", "", `{}`, "missing handle"},
	} {
		err := Handle(context.Background(), &stubNetworker{}, tc.action, tc.handle, strings.NewReader(tc.stdin), &bytes.Buffer{})
		if err == nil || err.Error() != tc.err {
			t.Errorf("%s %q: got %v, want %s", tc.action, tc.stdin, err, tc.err)
		}
	}
}
