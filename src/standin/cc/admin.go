package cc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Admin is a client of AdminHandler at Addr (host:port, plain HTTP).
type Admin struct{ Addr string }

// Put creates or replaces g and returns when the server answered.
func (a Admin) Put(g SecurityGroup) (time.Time, error) {
	b, err := json.Marshal(g)
	if err != nil {
		return time.Time{}, err
	}
	at, _, err := a.do(http.MethodPut, "/security_groups/"+g.GUID, b)
	return at, err
}

// Delete removes the group guid and returns when the server answered.
func (a Admin) Delete(guid string) (time.Time, error) {
	at, _, err := a.do(http.MethodDelete, "/security_groups/"+guid, nil)
	return at, err
}

// Requests is how many security group listings the server has served.
func (a Admin) Requests() (int, error) {
	_, body, err := a.do(http.MethodGet, "/requests", nil)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(body))
}

func (a Admin) do(method, path string, body []byte) (time.Time, string, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+a.Addr+path, rd)
	if err != nil {
		return time.Time{}, "", err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return time.Time{}, "", err
	}
	defer resp.Body.Close()
	at := time.Now()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return at, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return at, "", fmt.Errorf("cloud controller %s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return at, string(b), nil
}
