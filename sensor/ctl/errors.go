package ctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/peerwatch/peerwatch/sensor/api"
)

// explain turns an error of the API client into one line that says what
// failed and what to look at.
func (c *cli) explain(err error) error {
	if err == nil {
		return nil
	}
	addr := c.g.addr
	var he *api.HTTPError
	if errors.As(err, &he) {
		msg := he.Message
		if msg == "" {
			msg = "no reason given"
		}
		switch {
		case he.StatusCode == http.StatusUnauthorized:
			hint := "see --user and --password-file"
			if c.client.User != "" || c.client.Password != "" {
				hint = "check --user and --password-file against sensord's http.basic_auth"
			}
			return fmt.Errorf("sensord at %s refused the request: %s (%s; %s)", addr, msg, he.Status, hint)
		case he.StatusCode == http.StatusBadRequest:
			return fmt.Errorf("sensord refused the request: %s (%s)", msg, he.Status)
		case he.StatusCode == http.StatusNotFound || he.StatusCode == http.StatusMethodNotAllowed:
			return fmt.Errorf("sensord at %s does not serve %s: %s (%s; is --addr a peerwatch sensor of this version?)", addr, strings.TrimPrefix(he.URL, addr), msg, he.Status)
		case he.StatusCode >= 500:
			return fmt.Errorf("sensord at %s failed: %s (%s; see its log)", addr, msg, he.Status)
		}
		return fmt.Errorf("sensord at %s answered %s: %s", addr, he.Status, msg)
	}
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	return fmt.Errorf("cannot reach sensord at %s: %s (is sensord running? see --addr)", addr, c.reason(ue))
}

// reason is why a request got no answer, briefly: "connection refused".
func (c *cli) reason(ue *url.Error) string {
	var se *os.SyscallError
	var dns *net.DNSError
	switch {
	case ue.Timeout() || errors.Is(ue, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s (see --timeout)", c.g.timeout)
	case errors.As(ue.Err, &dns):
		return dns.Error()
	case errors.As(ue.Err, &se):
		return se.Err.Error()
	}
	var oe *net.OpError
	if errors.As(ue.Err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return ue.Err.Error()
}
