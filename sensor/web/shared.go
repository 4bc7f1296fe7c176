package web

import (
	"bytes"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// What other peerwatch pages (collectord's dashboard) share with the status
// page: the assets, the template parts, the headers and the parameter rules.
// They build on these rather than copy them, so that the pages look and
// behave alike.

// Static are the status page's static files: style.css, chart.js (numbers
// for humans and the SVG charts, as window.peerwatch), status.js and
// favicon.svg.
func Static() fs.FS { return staticFS }

// ClassLabel is a protocol class's name for people: "TCP", "Tunnel/VPN".
func ClassLabel(c traffic.Class) string { return classLabel(c) }

// ParsePage parses the page template at pattern in fsys together with the
// shared parts (parts.html: "num", "dot", "classes", "share", "top"). The
// result is named after the page's file.
func ParsePage(fsys fs.FS, pattern string) (*template.Template, error) {
	t, err := template.ParseFS(fsys, pattern)
	if err != nil {
		return nil, err
	}
	return t.ParseFS(assets, "assets/parts.html")
}

// SecurityHeaders sets on every response the headers of the status page:
// a Content-Security-Policy that allows only the server's own scripts,
// styles and images, nosniff, no framing, no referrer.
func SecurityHeaders(next http.Handler) http.Handler { return securityHeaders(next) }

// OnlyGet refuses every method but GET and HEAD with 405 (a JSON body on
// /api/).
func OnlyGet(next http.Handler) http.Handler { return onlyGet(next) }

// WriteJSON writes v as the JSON body of an answer with code, not cached.
func WriteJSON(w http.ResponseWriter, code int, v any) { writeJSON(w, code, v) }

// ReadParams parses a request's query, refusing parameters not in allowed
// and parameters given twice, with an error that IsParamError.
func ReadParams(r *http.Request, allowed ...string) (url.Values, error) {
	return readParams(r, allowed...)
}

// BadParam is a parameter error: its text starts with the parameter's name.
func BadParam(name, format string, a ...any) error { return badParam(name, format, a...) }

// IsParamError tells a parameter error (an answer of 400) from others.
func IsParamError(err error) bool {
	var pe *paramError
	return errors.As(err, &pe)
}

// ParseSpan reads a duration: Go's syntax ("90s", "15m", "1h30m") or whole
// days ("7d").
func ParseSpan(s string) (time.Duration, bool) { return parseSpan(s) }

// FormatSpan writes a duration the way ParseSpan reads it, briefly: "7d",
// "1h", "1h30m", "90s".
func FormatSpan(d time.Duration) string { return formatSpan(d) }

// RenderPage executes tmpl with data into a buffer and writes it as an
// uncached HTML page, or answers 500 (and logs) when the template fails,
// so that a failed render never leaves half a page.
func RenderPage(w http.ResponseWriter, tmpl *template.Template, data any, what string, log *slog.Logger) {
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		log.Error("render the "+what, "err", err)
		http.Error(w, "render the "+what+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}
