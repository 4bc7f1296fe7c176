package traffic

import "testing"

func TestCountersAdd(t *testing.T) {
	a := Counters{Packets: [2]uint64{1, 2}, Bytes: [2]uint64{100, 200}, Class: [NumClasses]uint64{TCP: 2, Tunnel: 1}}
	b := Counters{Packets: [2]uint64{3, 0}, Bytes: [2]uint64{300, 0}, Class: [NumClasses]uint64{UDP: 3}}
	a.Add(b)
	want := Counters{Packets: [2]uint64{4, 2}, Bytes: [2]uint64{400, 200}, Class: [NumClasses]uint64{TCP: 2, UDP: 3, Tunnel: 1}}
	if a != want {
		t.Fatalf("sum %+v, want %+v", a, want)
	}
	if a.Total() != 6 || a.TotalBytes() != 600 {
		t.Errorf("total %d packets %d bytes, want 6 and 600", a.Total(), a.TotalBytes())
	}
}

func TestGlobals(t *testing.T) {
	g := Globals{Seen: 10, NonIP: 1, Malformed: 2, BothLocal: 3, NeitherLocal: 1, Overflow: 1}
	g.Add(Globals{Seen: 1, Overflow: 1})
	if g.Seen != 11 || g.Buckets() != 9 {
		t.Errorf("seen %d buckets %d, want 11 and 9", g.Seen, g.Buckets())
	}
}

func TestNames(t *testing.T) {
	for c, want := range map[Class]string{TCP: "tcp", Tunnel: "tunnel", Other: "other", Class(9): "class(9)"} {
		if c.String() != want {
			t.Errorf("%d: %q, want %q", int(c), c.String(), want)
		}
	}
	if In.String() != "in" || Out.String() != "out" {
		t.Error("direction names")
	}
}
