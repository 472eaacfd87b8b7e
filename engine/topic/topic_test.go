package topic

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
)

var matchCases = []struct {
	filter, name string
	want         bool
}{
	{"a/b", "a/b", true},
	{"a/b", "a/c", false},
	{"a/+", "a/b", true},
	{"a/+", "a/b/c", false},
	{"a/#", "a", true}, // [MQTT-4.7.1-2]
	{"a/#", "a/b/c", true},
	{"#", "a/b", true},
	{"+/+", "/a", true},
	{"+", "/a", false},
	{"/+", "/a", true},
	{"a//b", "a//b", true},
	{"a/+/b", "a//b", true},
	{"#", "$SYS/x", false}, // [MQTT-4.7.2-1]
	{"+/x", "$SYS/x", false},
	{"$SYS/#", "$SYS/x", true},
	{"$SYS/+", "$SYS/x", true},
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+/+", "a", false},
}

func TestMatchFilter(t *testing.T) {
	for _, c := range matchCases {
		if got := MatchFilter(c.filter, c.name); got != c.want {
			t.Errorf("MatchFilter(%q, %q) = %t", c.filter, c.name, got)
		}
	}
}

func TestTreeAgreesWithMatchFilter(t *testing.T) {
	for _, c := range matchCases {
		tr := NewTree[string, int]()
		tr.Add(c.filter, "s", 1)
		got := false
		tr.Match(c.name, func(string, int) { got = true })
		if got != c.want {
			t.Errorf("tree: filter %q name %q = %t", c.filter, c.name, got)
		}
		r := NewRetained[int]()
		r.Set(c.name, 1)
		got = false
		r.Match(c.filter, func(string, int) { got = true })
		if got != c.want {
			t.Errorf("retained: filter %q name %q = %t", c.filter, c.name, got)
		}
	}
}

// TestTreeRandom compares the trie with MatchFilter on random filters.
func TestTreeRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	levels := []string{"a", "b", "$c", "", "+", "#"}
	var filters []string
	tr := NewTree[int, string]()
	for i := 0; i < 300; i++ {
		n := 1 + rng.Intn(4)
		f := ""
		for j := 0; j < n; j++ {
			l := levels[rng.Intn(len(levels))]
			if l == "#" && j != n-1 {
				l = "+"
			}
			if j > 0 {
				f += "/"
			}
			f += l
		}
		filters = append(filters, f)
		tr.Add(f, i, f)
	}
	r := NewRetained[string]()
	var names []string
	for i := 0; i < 200; i++ {
		n := 1 + rng.Intn(4)
		name := ""
		for j := 0; j < n; j++ {
			l := levels[rng.Intn(4)]
			if j > 0 {
				name += "/"
			}
			name += l
		}
		names = append(names, name)
		r.Set(name, name)
	}
	for _, name := range names {
		var got []int
		tr.Match(name, func(s int, _ string) { got = append(got, s) })
		sort.Ints(got)
		var want []int
		for i, f := range filters {
			if MatchFilter(f, name) {
				want = append(want, i)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("name %q: tree %v, MatchFilter %v", name, got, want)
		}
	}
	for _, f := range filters {
		got := map[string]bool{}
		r.Match(f, func(topic, m string) {
			if topic != m {
				t.Fatalf("topic %q carries %q", topic, m)
			}
			got[topic] = true
		})
		for _, name := range names {
			if MatchFilter(f, name) != got[name] {
				t.Fatalf("retained filter %q name %q: %t", f, name, got[name])
			}
		}
	}
}

func TestTreeAddRemove(t *testing.T) {
	tr := NewTree[string, byte]()
	if !tr.Add("a/+", "s1", 1) || tr.Add("a/+", "s1", 2) {
		t.Fatal("Add reports new subscriptions wrongly")
	}
	tr.Add("a/#", "s2", 0)
	got := map[string]byte{}
	tr.Match("a/b", func(s string, q byte) { got[s] = q })
	if got["s1"] != 2 || len(got) != 2 {
		t.Fatalf("got %v", got)
	}
	if !tr.Remove("a/+", "s1") || tr.Remove("a/+", "s1") || tr.Len() != 1 {
		t.Fatal("Remove")
	}
	tr.Remove("a/#", "s2")
	if len(tr.root.children) != 0 {
		t.Fatal("empty branches are not pruned")
	}
	r := NewRetained[string]()
	r.Set("x/y", "1")
	r.Set("x/y", "2")
	if m, ok := r.Get("x/y"); !ok || m != "2" || r.Len() != 1 {
		t.Fatal("retained replace")
	}
	if !r.Delete("x/y") || r.Len() != 0 || len(r.root.children) != 0 {
		t.Fatal("retained delete")
	}
}

// BenchmarkMatch100k matches against 100k subscriptions, as a busy
// broker with one filter per device would hold.
func BenchmarkMatch100k(b *testing.B) {
	tr := NewTree[int, byte]()
	for i := 0; i < 100000; i++ {
		tr.Add(fmt.Sprintf("devices/%d/+/state", i), i, 1)
	}
	tr.Add("devices/#", -1, 0)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		tr.Match(fmt.Sprintf("devices/%d/x/state", i%100000), func(int, byte) { n++ })
	}
	if n != 2*b.N {
		b.Fatalf("matched %d for %d", n, b.N)
	}
}

// TestRetainedDeepTopicLinear: matching a retained message on a deep
// topic allocates nothing per level (it built the topic string again at
// every level: 32,767 levels cost 1 GB and seconds of a worker).
func TestRetainedDeepTopicLinear(t *testing.T) {
	const depth = 5000
	deep := "l" + strings.Repeat("/x", depth-1)
	r := NewRetained[int]()
	r.Set(deep, 7)
	for _, filter := range []string{"l/#", "#", "l/+/#"} {
		got := 0
		allocs := testing.AllocsPerRun(3, func() {
			r.Match(filter, func(topic string, m int) {
				if topic != deep || m != 7 {
					t.Fatalf("%s: got %d on a topic of %d bytes", filter, m, len(topic))
				}
				got++
			})
		})
		if got == 0 {
			t.Fatalf("%s: no match", filter)
		}
		if allocs > 50 {
			t.Errorf("%s: %.0f allocations to match a %d-level topic", filter, allocs, depth)
		}
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		pattern, filter string
		want            bool
	}{
		{"a/b", "a/b", true},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/#", "a/#", true},
		{"a/#", "a/b/+/c", true},
		{"a/#", "a", true},
		{"#", "x/#", true},
		{"+/b", "+/b", true},
		{"a/b", "a/+", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/+", "a/b/c", false},
		{"+/b", "a/b", true},
		{"#", "$SYS/x", true},
	} {
		if got := Covers(tc.pattern, tc.filter); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.pattern, tc.filter, got, tc.want)
		}
	}
}
