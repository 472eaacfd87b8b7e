// Package topic matches MQTT topic names against topic filters: a
// subscription tree for routing and a retained-message tree for delivering
// retained messages to new subscriptions.
//
// Both are tries keyed by topic level, so matching costs the depth of the
// topic, not the number of subscriptions or retained messages.
package topic

import (
	"strings"
	"sync"
)

// MatchFilter reports whether a topic name matches a topic filter
// (4.7). Filters that start with a wildcard do not match topic names that
// start with '$' ([MQTT-4.7.2-1]).
func MatchFilter(filter, name string) bool {
	if len(name) > 0 && name[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		nl, nrest, nmore := strings.Cut(name, "/")
		switch {
		case fl == "#":
			return true
		case fl != "+" && fl != nl:
			return false
		}
		if !fmore {
			return !nmore
		}
		if !nmore {
			// "a/#" matches "a" ([MQTT-4.7.1-2]).
			return frest == "#"
		}
		filter, name = frest, nrest
	}
}

// Covers reports whether every topic name that filter matches is one
// pattern matches: for a topic name, MatchFilter; for a filter with
// wildcards, whether a subscription to it stays inside what an ACL
// pattern allows ("a/+" covers "a/+" and "a/b", not "a/#" or "+/b").
func Covers(pattern, filter string) bool {
	for {
		pl, prest, pmore := strings.Cut(pattern, "/")
		fl, frest, fmore := strings.Cut(filter, "/")
		switch {
		case pl == "#":
			return true
		case fl == "#":
			return false // more than any other pattern level allows
		case pl == "+":
			// any level, "+" included
		case fl == "+" || fl != pl:
			return false
		}
		if !pmore {
			return !fmore
		}
		if !fmore {
			return prest == "#" // "a/#" covers "a"
		}
		pattern, filter = prest, frest
	}
}

// Tree is a subscription tree: filters to subscribers of type S with a value
// V each (the subscription's options). It is safe for concurrent use;
// matching takes a read lock only.
type Tree[S comparable, V any] struct {
	mu   sync.RWMutex
	root *node[S, V]
	n    int
}

type node[S comparable, V any] struct {
	children map[string]*node[S, V]
	subs     map[S]V
}

// NewTree returns an empty tree.
func NewTree[S comparable, V any]() *Tree[S, V] {
	return &Tree[S, V]{root: &node[S, V]{}}
}

// Add subscribes s to filter with value v, replacing an existing
// subscription of s to the same filter ([MQTT-3.8.4-3]). It reports
// whether the subscription is new.
func (t *Tree[S, V]) Add(filter string, s S, v V) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.root
	for _, level := range strings.Split(filter, "/") {
		c := n.children[level]
		if c == nil {
			if n.children == nil {
				n.children = map[string]*node[S, V]{}
			}
			c = &node[S, V]{}
			n.children[level] = c
		}
		n = c
	}
	if n.subs == nil {
		n.subs = map[S]V{}
	}
	_, existed := n.subs[s]
	n.subs[s] = v
	if !existed {
		t.n++
	}
	return !existed
}

// Remove unsubscribes s from filter and reports whether it was subscribed.
// Empty branches are pruned.
func (t *Tree[S, V]) Remove(filter string, s S) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	levels := strings.Split(filter, "/")
	path := make([]*node[S, V], 0, len(levels)+1)
	n := t.root
	path = append(path, n)
	for _, level := range levels {
		n = n.children[level]
		if n == nil {
			return false
		}
		path = append(path, n)
	}
	if _, ok := n.subs[s]; !ok {
		return false
	}
	delete(n.subs, s)
	t.n--
	for i := len(levels) - 1; i >= 0; i-- {
		c := path[i+1]
		if len(c.subs) > 0 || len(c.children) > 0 {
			break
		}
		delete(path[i].children, levels[i])
	}
	return true
}

// Len returns the number of subscriptions.
func (t *Tree[S, V]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Match calls f for every subscription whose filter matches the topic
// name. A subscriber with several matching filters is reported once per
// filter; f runs under the read lock and must not modify the tree.
func (t *Tree[S, V]) Match(name string, f func(s S, v V)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	dollar := len(name) > 0 && name[0] == '$'
	t.match(t.root, name, 0, dollar, f)
}

func (t *Tree[S, V]) match(n *node[S, V], name string, depth int, dollar bool, f func(S, V)) {
	level, rest, more := strings.Cut(name, "/")
	// [MQTT-4.7.2-1] wildcards at the first level do not match $ topics.
	wild := !(dollar && depth == 0)
	if wild {
		if c := n.children["#"]; c != nil {
			emit(c, f)
		}
	}
	if c := n.children[level]; c != nil {
		t.descend(c, rest, more, depth, dollar, f)
	}
	if wild {
		if c := n.children["+"]; c != nil {
			t.descend(c, rest, more, depth, dollar, f)
		}
	}
}

func (t *Tree[S, V]) descend(c *node[S, V], rest string, more bool, depth int, dollar bool, f func(S, V)) {
	if more {
		t.match(c, rest, depth+1, dollar, f)
		return
	}
	emit(c, f)
	// "a/#" also matches "a" ([MQTT-4.7.1-2]).
	if h := c.children["#"]; h != nil {
		emit(h, f)
	}
}

func emit[S comparable, V any](n *node[S, V], f func(S, V)) {
	for s, v := range n.subs {
		f(s, v)
	}
}
