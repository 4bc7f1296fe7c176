package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/peerwatch/peerwatch/sensor/api"
)

// contentSecurityPolicy allows the page's own script, style and images, and
// nothing else: no inline script or style, no other origin, no frames.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// securityHeaders sets the headers every response carries, errors included.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// onlyGet refuses every method but GET and HEAD: everything here is read-only.
func onlyGet(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Allow", "GET, HEAD")
		msg := "method " + r.Method + " not allowed: use GET or HEAD"
		if strings.HasPrefix(r.URL.Path, "/api/") {
			writeJSON(w, http.StatusMethodNotAllowed, api.Error{Error: msg})
			return
		}
		http.Error(w, msg, http.StatusMethodNotAllowed)
	})
}

// basicAuth asks for the account on every path. It compares digests of the
// user and password in constant time, so that neither their content nor their
// length shows in the response time.
func basicAuth(acct BasicAuth, next http.Handler) http.Handler {
	wantUser := sha256.Sum256([]byte(acct.User))
	wantPass := sha256.Sum256([]byte(acct.Password))
	return RequireAuth(func(user, pass string) bool {
		gotUser := sha256.Sum256([]byte(user))
		gotPass := sha256.Sum256([]byte(pass))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		return userOK&passOK == 1
	}, next)
}

// RequireAuth asks for HTTP basic authentication on every path and serves
// next only to a user and password that verify accepts; the refusal is a
// 401 with a challenge, in JSON under /api/.
func RequireAuth(verify func(user, password string) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || !verify(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="peerwatch", charset="UTF-8"`)
			if strings.HasPrefix(r.URL.Path, "/api/") {
				writeJSON(w, http.StatusUnauthorized, api.Error{Error: "authentication required"})
				return
			}
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
