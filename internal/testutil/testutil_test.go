package testutil

import (
	"flag"
	"strconv"
	"testing"
)

// recordingTB is a testing.TB that records the first Skip instead of
// stopping the goroutine, so that RequireRoot's decision can be checked.
type recordingTB struct {
	testing.TB
	skipped []any
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Skip(args ...any) {
	if r.skipped == nil {
		r.skipped = args
	}
}

func setShort(t *testing.T, short bool) {
	t.Helper()
	was := testing.Short()
	if err := flag.Set("test.short", strconv.FormatBool(short)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = flag.Set("test.short", strconv.FormatBool(was)) })
}

func TestRequireRoot(t *testing.T) {
	orig := geteuid
	t.Cleanup(func() { geteuid = orig })

	for _, tc := range []struct {
		name  string
		euid  int
		short bool
		want  string // skip message, "" for none
	}{
		{name: "root", euid: 0, want: ""},
		{name: "user", euid: 1000, want: SkipNotRoot},
		{name: "root/short", euid: 0, short: true, want: SkipShort},
		{name: "user/short", euid: 1000, short: true, want: SkipShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setShort(t, tc.short)
			geteuid = func() int { return tc.euid }
			tb := &recordingTB{TB: t}
			RequireRoot(tb)
			switch {
			case tc.want == "" && tb.skipped != nil:
				t.Fatalf("skipped with %v, want no skip", tb.skipped)
			case tc.want != "" && (len(tb.skipped) != 1 || tb.skipped[0] != tc.want):
				t.Fatalf("skip message = %v, want %q", tb.skipped, tc.want)
			}
		})
	}
}
