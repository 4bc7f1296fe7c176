package traffic

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

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

func TestCountersJSONStrict(t *testing.T) {
	var c Counters
	good := `{"packets":[1, 18446744073709551615],"bytes":[ 0 ,7 ],"class":[1,0,0,0,18446744073709551615]}`
	if err := json.Unmarshal([]byte(good), &c); err != nil {
		t.Fatalf("%s: %v", good, err)
	}
	want := Counters{Packets: ByDirection{1, math.MaxUint64}, Bytes: ByDirection{0, 7}, Class: ByClass{1, 0, 0, 0, math.MaxUint64}}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	if b, err := json.Marshal(c); err != nil || !strings.Contains(string(b), `"packets":[1,18446744073709551615]`) {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	for _, bad := range []string{
		`{"packets":[1,2,3]}`,
		`{"packets":[1]}`,
		`{"packets":[]}`,
		`{"packets":[1,-2]}`,
		`{"packets":[1,2.5]}`,
		`{"packets":[1,2e3]}`,
		`{"packets":[1,18446744073709551616]}`,
		`{"packets":[1,99999999999999999999]}`,
		`{"packets":[01,2]}`,
		`{"packets":[1,"2"]}`,
		`{"packets":[1,,2]}`,
		`{"packets":[1 2]}`,
		`{"packets":{"0":1}}`,
		`{"packets":null}`,
		`{"class":[1,2,3,4]}`,
		`{"class":[1,2,3,4,5,6]}`,
	} {
		var c Counters
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%s: accepted as %+v", bad, c)
		}
	}
}
