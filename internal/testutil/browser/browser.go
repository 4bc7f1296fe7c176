// Package browser runs a headless chromium for the tests of peerwatch's
// pages (the sensor's status page, collectord's dashboard) with chromedp,
// and collects what the page's console and the browser log complain of.
package browser

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium, which scripts/install-deps installs.
const chromiumPath = "/usr/bin/chromium"

// Require skips the test under -short or when chromium is not installed:
// Start does too, and a test calls Require first when it has costly things
// to set up before the browser.
func Require(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tier: skipped by -short (make test-unit runs the pure-Go tests only)")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("needs %s for the browser test: run scripts/install-deps (CI does): %v", chromiumPath, err)
	}
}

// Start starts a headless chromium for the test, with a fresh profile and
// nothing that talks to the internet, and returns a tab's context.
func Start(t *testing.T) context.Context {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	return ctx
}

// Console collects the page's console errors, uncaught exceptions and
// browser log errors (CSP violations, failed loads).
type Console struct {
	mu       sync.Mutex
	problems []string
}

func WatchConsole(t *testing.T, ctx context.Context) *Console {
	t.Helper()
	w := &Console{}
	err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert && ev.Type != runtime.ConsoleAPICalledTypeWarning {
				return
			}
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			msg = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
		case *runtime.EventExceptionThrown:
			msg = "uncaught exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level != log.EntryLevelError && ev.Entry.Level != log.EntryLevelWarning {
				return
			}
			msg = "browser log " + string(ev.Entry.Level) + " (" + string(ev.Entry.Source) + "): " + ev.Entry.Text + " " + ev.Entry.URL
		default:
			return
		}
		w.mu.Lock()
		w.problems = append(w.problems, msg)
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return w
}

// Check fails the test for each problem seen since the last Check.
func (w *Console) Check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.problems {
		t.Error(p)
	}
	w.problems = nil
}

// Load opens url, waits until the page's script says its charts are drawn
// (body[data-charts="ready"], which both pages set) and returns what
// script, a JavaScript expression, evaluates to.
func Load[T any](t *testing.T, ctx context.Context, url, script string) T {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitReady(chromedp.CSS(`body[data-charts="ready"]`)),
	); err != nil {
		t.Fatalf("load %s: %v", url, err)
	}
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](script))
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return v
}
