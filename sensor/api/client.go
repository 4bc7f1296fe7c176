package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Prefix is the path under which sensord serves the API.
const Prefix = "/api/v1/"

// maxBody bounds what the client reads of an answer: a top list of 10000
// prefixes is about 3 MB.
const maxBody = 64 << 20

// Client reads a sensor's API. The zero value is not usable: set BaseURL.
type Client struct {
	// BaseURL is the sensor's HTTP listener: "http://127.0.0.1:9100".
	// A path in it is kept ("https://proxy/sensor1" asks
	// "https://proxy/sensor1/api/v1/status").
	BaseURL string
	// HTTP sends the requests; nil: a client with a 30 s timeout.
	HTTP *http.Client
	// User and Password are a basic-auth account, sent when User or
	// Password is set.
	User, Password string
}

// HTTPError is an answer other than 200 OK: its status and the server's
// {"error": …} message (or the start of the body when it is not one).
type HTTPError struct {
	URL        string // the request's URL
	StatusCode int    // 400, 401, 404, 405, 500…
	Status     string // "400 Bad Request"
	Message    string // the server's error text
}

func (e *HTTPError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("GET %s: %s", e.URL, e.Status)
	}
	return fmt.Sprintf("GET %s: %s: %s", e.URL, e.Status, e.Message)
}

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// Endpoint is the URL of an endpoint ("status", "top"…) with a query.
func (c *Client) Endpoint(endpoint string, query url.Values) (string, error) {
	base := strings.TrimSpace(c.BaseURL)
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("sensor address %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("sensor address %q: not an http:// or https:// URL", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + Prefix + endpoint
	u.RawPath, u.RawQuery, u.Fragment = "", query.Encode(), ""
	return u.String(), nil
}

// Get asks an endpoint ("status", "top"…) with a query and returns the body
// of a 200 answer as received. Any other answer is an *HTTPError.
func (c *Client) Get(ctx context.Context, endpoint string, query url.Values) ([]byte, error) {
	target, err := c.Endpoint(endpoint, query)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if c.User != "" || c.Password != "" {
		req.SetBasicAuth(c.User, c.Password)
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err // a *url.Error naming the method and the URL
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read the answer: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{URL: target, StatusCode: resp.StatusCode, Status: resp.Status, Message: errorMessage(resp.Header, body)}
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/json" {
		return nil, fmt.Errorf("GET %s: the answer is %q, not JSON: is this a peerwatch sensor?", target, resp.Header.Get("Content-Type"))
	}
	return body, nil
}

// errorMessage is the text of an error answer: the API's {"error": …}, or
// the first line of anything else (a proxy's page).
func errorMessage(h http.Header, body []byte) string {
	var e Error
	if ct, _, _ := mime.ParseMediaType(h.Get("Content-Type")); ct == "application/json" && json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}

func (c *Client) get(ctx context.Context, endpoint string, query url.Values, v any) error {
	body, err := c.Get(ctx, endpoint, query)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode the %s answer: %w", endpoint, err)
	}
	return nil
}

// Status is GET /api/v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.get(ctx, "status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// TopQuery is the query of a top list; empty values (0 for limit) are left
// out, and the sensor's defaults apply: by prefix, window 1h, direction
// both, limit 50.
func TopQuery(by, window, direction string, limit int) url.Values {
	q := url.Values{}
	set(q, "by", by)
	set(q, "window", window)
	set(q, "direction", direction)
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}

func set(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

// Top is GET /api/v1/top (see TopQuery for the parameters), with its rows
// typed after By.
func (c *Client) Top(ctx context.Context, by, window, direction string, limit int) (*Top, error) {
	body, err := c.Get(ctx, "top", TopQuery(by, window, direction, limit))
	if err != nil {
		return nil, err
	}
	t, err := DecodeTop(body)
	if err != nil {
		return nil, fmt.Errorf("decode the top answer: %w", err)
	}
	return t, nil
}

// DecodeTop decodes a top list with its Rows typed after its By:
// []PrefixRow, []CountryRow or []ASRow.
func DecodeTop(b []byte) (*Top, error) {
	var t struct {
		Top
		Rows json.RawMessage `json:"rows"`
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, err
	}
	top := t.Top
	var err error
	switch top.By {
	case ByPrefix:
		top.Rows, err = decodeRows[PrefixRow](t.Rows)
	case ByCountry:
		top.Rows, err = decodeRows[CountryRow](t.Rows)
	case ByAS:
		top.Rows, err = decodeRows[ASRow](t.Rows)
	default:
		return nil, fmt.Errorf("by: %q is not prefix, country or as", top.By)
	}
	if err != nil {
		return nil, fmt.Errorf("rows: %w", err)
	}
	return &top, nil
}

func decodeRows[T any](raw json.RawMessage) ([]T, error) {
	rows := []T{}
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return rows, nil
	}
	err := json.Unmarshal(raw, &rows)
	return rows, err
}

// LookupQuery is the query of a lookup; an empty window is the sensor's
// default, 1h.
func LookupQuery(addr netip.Addr, window string) url.Values {
	q := url.Values{"addr": {addr.String()}}
	set(q, "window", window)
	return q
}

// Lookup is GET /api/v1/lookup of addr over the last hour.
func (c *Client) Lookup(ctx context.Context, addr netip.Addr) (*Lookup, error) {
	return c.LookupWindow(ctx, addr, "")
}

// LookupWindow is GET /api/v1/lookup of addr over a window ("" is 1h).
func (c *Client) LookupWindow(ctx context.Context, addr netip.Addr, window string) (*Lookup, error) {
	if !addr.IsValid() {
		return nil, errors.New("lookup: no address")
	}
	var l Lookup
	if err := c.get(ctx, "lookup", LookupQuery(addr, window), &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// SeriesQuery is the query of a series; empty values and zero times are
// the sensor's defaults (key total, level 1m, to now, from a level's span
// before to).
func SeriesQuery(key, level string, from, to time.Time) url.Values {
	q := url.Values{}
	set(q, "key", key)
	set(q, "level", level)
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// Series is GET /api/v1/series (see SeriesQuery for the parameters).
func (c *Client) Series(ctx context.Context, key, level string, from, to time.Time) (*Series, error) {
	var s Series
	if err := c.get(ctx, "series", SeriesQuery(key, level, from, to), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Alerts is GET /api/v1/alerts.
func (c *Client) Alerts(ctx context.Context) (*Alerts, error) {
	var a Alerts
	if err := c.get(ctx, "alerts", nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}
