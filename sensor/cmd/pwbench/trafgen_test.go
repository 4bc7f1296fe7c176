package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCycleShare(t *testing.T) {
	// 10 packets of a cycle of 4 frames: 0 and 1 three times, 2 and 3 twice.
	want := []uint64{3, 3, 2, 2}
	var sum uint64
	for i, w := range want {
		if got := cycleShare(i, 4, 10); got != w {
			t.Errorf("frame %d: %d, want %d", i, got, w)
		}
		sum += cycleShare(i, 4, 10)
	}
	if sum != 10 {
		t.Errorf("sum %d, want 10", sum)
	}
	if got := cycleShare(0, 5, 5); got != 1 {
		t.Errorf("a cycle as long as the segment: %d, want 1", got)
	}
}

func TestWriteTrafgenConfig(t *testing.T) {
	var b bytes.Buffer
	if err := writeTrafgenConfig(&b, [][]byte{{0x02, 0x70, 0xff}, {0x00}}); err != nil {
		t.Fatal(err)
	}
	want := "# pwbench send: 2 frames, sent round robin\n{ 0x02, 0x70, 0xff }\n{ 0x00 }\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
	if err := writeTrafgenConfig(&b, [][]byte{{}}); err == nil {
		t.Error("an empty frame: no error")
	}
}

func TestTrafgenArgs(t *testing.T) {
	got := strings.Join(trafgenArgs("/usr/sbin/trafgen", "pw-peer", "b1", "/tmp/x.cfg", 200000, 49999.6), " ")
	want := "ip netns exec pw-peer /usr/sbin/trafgen -i /tmp/x.cfg -o b1 -n 200000 -P 1 --no-sock-mem -Q -b 50000pps"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := strings.Join(trafgenArgs("trafgen", "n", "d", "c", 5, 0), " "); strings.Contains(got, "-b") {
		t.Errorf("rate 0 (as fast as it goes) has a rate: %q", got)
	}
}

func TestParseTrafgenOutgoing(t *testing.T) {
	out := "     1 packets to schedule\n    60 bytes in total\nRunning! Hang up with ^C!\n\n\n" +
		"      195962 packets outgoing\n    11757720 bytes outgoing\n           2 sec, 837933 usec on CPU0 (195962 packets)\n"
	n, err := parseTrafgenOutgoing([]byte(out))
	if err != nil || n != 195962 {
		t.Errorf("got %d, %v; want 195962", n, err)
	}
	if _, err := parseTrafgenOutgoing([]byte("Invalid unit type for rate\n")); err == nil || !strings.Contains(err.Error(), "Invalid unit") {
		t.Errorf("no summary: err %v", err)
	}
}
