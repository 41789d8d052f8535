package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// API is a client of policy-server's external API with a bearer token.
type API struct {
	URL   string
	Token string
}

// Policy is one v1 external API policy.
func Policy(src, dst, proto string, start, end int) map[string]any {
	return map[string]any{
		"source":      map[string]any{"id": src},
		"destination": map[string]any{"id": dst, "protocol": proto, "ports": map[string]any{"start": start, "end": end}},
	}
}

// Do sends body as JSON and returns the status and the answer's body.
func (a API) Do(method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.URL+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// CreatePolicies creates policies and returns when the API answered (the
// moment propagation is measured from).
func (a API) CreatePolicies(policies ...map[string]any) (time.Time, error) {
	code, body, err := a.Do(http.MethodPost, "/networking/v1/external/policies", map[string]any{"policies": policies})
	at := time.Now()
	if err != nil {
		return at, fmt.Errorf("create policies: %w", err)
	}
	if code != http.StatusOK && code != http.StatusCreated {
		return at, fmt.Errorf("create policies: %d %s", code, bytes.TrimSpace(body))
	}
	return at, nil
}

// DeletePolicies deletes policies and returns when the API answered.
func (a API) DeletePolicies(policies ...map[string]any) (time.Time, error) {
	code, body, err := a.Do(http.MethodPost, "/networking/v1/external/policies/delete", map[string]any{"policies": policies})
	at := time.Now()
	if err != nil {
		return at, fmt.Errorf("delete policies: %w", err)
	}
	if code != http.StatusOK {
		return at, fmt.Errorf("delete policies: %d %s", code, bytes.TrimSpace(body))
	}
	return at, nil
}
