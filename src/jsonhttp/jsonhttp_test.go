package jsonhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// seen is what the test server received.
type seen struct {
	Method, URI, ContentType, Accept, Authorization, Body string
}

func newServer(t *testing.T, status int, body string) (*Client, *[]seen) {
	t.Helper()
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, seen{r.Method, r.URL.RequestURI(), r.Header.Get("Content-Type"), r.Header.Get("Accept"), r.Header.Get("Authorization"), string(b)})
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return &Client{HTTP: srv.Client(), Base: srv.URL, Header: http.Header{"Accept": {"application/json"}}}, &got
}

func TestDoBuildsRequests(t *testing.T) {
	c, got := newServer(t, 200, `{"a":1}`)
	ctx := context.Background()
	var out struct{ A int }
	calls := []Request{
		{Path: "/x?q=1", Header: http.Header{"authorization": {"bearer t"}}},
		{Method: http.MethodPut, Path: "/json", Body: map[string]string{"k": "v"}},
		{Method: http.MethodPost, Path: "/form", Body: url.Values{"token": {"a b"}}},
		{Method: http.MethodPost, Path: "/raw", Body: []byte(`{"raw": true}`)},
	}
	for _, r := range calls {
		if _, err := c.Do(ctx, r, &out); err != nil || out.A != 1 {
			t.Fatalf("%s %s: %v, decoded %+v", r.Method, r.Path, err, out)
		}
	}
	want := []seen{
		{Method: "GET", URI: "/x?q=1", Accept: "application/json", Authorization: "bearer t"},
		{Method: "PUT", URI: "/json", ContentType: "application/json", Accept: "application/json", Body: `{"k":"v"}`},
		{Method: "POST", URI: "/form", ContentType: "application/x-www-form-urlencoded", Accept: "application/json", Body: "token=a+b"},
		{Method: "POST", URI: "/raw", ContentType: "application/json", Accept: "application/json", Body: `{"raw": true}`},
	}
	if diff := cmp.Diff(want, *got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestStatusError(t *testing.T) {
	c, _ := newServer(t, 409, "  {\"error\": \"lease mismatch\"}\n")
	h, err := c.Do(context.Background(), Request{Path: "/renew"}, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 409 || se.Status != "409 Conflict" || h == nil {
		t.Fatalf("err = %#v, want a *StatusError for 409 with the header", err)
	}
	if got, want := err.Error(), `http status 409: {"error": "lease mismatch"}`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if se.Message() != "lease mismatch" || !IsStatus(err, 409) || IsStatus(err, 404) {
		t.Errorf("Message() = %q, IsStatus(409) = %t", se.Message(), IsStatus(err, 409))
	}
	re := se.Reword("bad uaa response: %d: %s", se.Code, se.Body)
	if !strings.HasPrefix(re.Error(), "bad uaa response: 409: ") || se.Error() == re.Error() {
		t.Errorf("Reword = %q; the original must keep its text (%q)", re.Error(), se.Error())
	}
	if (&StatusError{Body: "<html>"}).Message() != "" {
		t.Error("a body that is not an error document has no Message")
	}
	long := &StatusError{Body: " " + strings.Repeat("x", 600) + " "}
	if ex := long.Excerpt(); len(ex) != 515 || !strings.HasSuffix(ex, "x...") {
		t.Errorf("Excerpt = %d bytes ending %q, want 512 and ...", len(ex), ex[len(ex)-4:])
	}
}

func TestWords(t *testing.T) {
	words := Words{
		Request: Prefix("building request"),
		Send:    func(c Call, err error) error { return fmt.Errorf("request %s %s: %w", c.Method, c.Path, err) },
		Decode:  func(c Call, err error) error { return fmt.Errorf("decoding %s: %w", c.URL, err) },
		Status:  func(c Call, se *StatusError) error { return se.Reword("%s answered %d", c.Path, se.Code) },
	}
	c, _ := newServer(t, 200, "garbage")
	c.Words = words
	var out any
	_, err := c.Do(context.Background(), Request{Path: "/d"}, &out)
	var syn *json.SyntaxError
	if !errors.As(err, &syn) || !strings.HasPrefix(err.Error(), "decoding "+c.Base+"/d: invalid character") {
		t.Errorf("decode failure = %v", err)
	}

	c, _ = newServer(t, 503, "down")
	c.Words = words
	_, err = c.Do(context.Background(), Request{Path: "/s"}, &out)
	if !IsStatus(err, 503) || err.Error() != "/s answered 503" {
		t.Errorf("status = %v", err)
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c = &Client{HTTP: http.DefaultClient, Base: "http://" + addr, Words: words}
	_, err = c.Do(context.Background(), Request{Method: http.MethodPut, Path: "/p"}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "request PUT /p: ") {
		t.Errorf("send failure = %v", err)
	}
	_, err = c.Do(context.Background(), Request{Path: "/p", Body: func() {}}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "building request: marshal request: json: unsupported type") {
		t.Errorf("request failure = %v", err)
	}
	c.Base = "http://[::1"
	_, err = c.Do(context.Background(), Request{Path: "/p"}, nil)
	var ue *url.Error
	if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "building request: ") {
		t.Errorf("bad URL = %v", err)
	}
}

// TestBodyLimit: a 2xx answer over MaxBody is refused as ErrTooLarge; an
// error answer's body is cut at MaxBody.
func TestBodyLimit(t *testing.T) {
	defer func(m int) { maxBody = m }(maxBody)
	maxBody = 1 << 20
	huge := func(status int) *Client {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			chunk := []byte(strings.Repeat(" ", 1<<20))
			for range maxBody>>20 + 1 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}))
		t.Cleanup(srv.Close)
		return &Client{HTTP: srv.Client(), Base: srv.URL, Words: Words{Decode: Prefix("decode")}}
	}
	var out any
	_, err := huge(200).Do(context.Background(), Request{}, &out)
	if !errors.Is(err, ErrTooLarge) || err.Error() != "decode: answer larger than 268435456 bytes" {
		t.Errorf("huge 200 = %v, want ErrTooLarge", err)
	}
	_, err = huge(500).Do(context.Background(), Request{}, &out)
	var se *StatusError
	if !errors.As(err, &se) || len(se.Body) != maxBody {
		t.Errorf("huge 500 = %T with %d bytes, want a StatusError cut at the limit", err, len(se.Body))
	}
}

func TestBare(t *testing.T) {
	cause := errors.New("connection refused")
	if got := Bare(&url.Error{Op: "Get", URL: "http://x", Err: cause}); got != cause {
		t.Errorf("Bare(url.Error) = %v, want the cause", got)
	}
	if got := Bare(cause); got != cause {
		t.Errorf("Bare(plain) = %v, want it as is", got)
	}
}
