package topic

import (
	"strings"
	"sync"
)

// Retained stores one message of type M per topic name and finds those
// matching a topic filter. It is safe for concurrent use.
type Retained[M any] struct {
	mu   sync.RWMutex
	root *rnode[M]
	n    int
}

type rnode[M any] struct {
	children map[string]*rnode[M]
	// topic is the full topic name of the node's message: matching never
	// rebuilds it level by level, which cost memory quadratic in depth.
	topic string
	msg   M
	has   bool
}

// NewRetained returns an empty store.
func NewRetained[M any]() *Retained[M] { return &Retained[M]{root: &rnode[M]{}} }

// Set stores m as the retained message of topic, replacing any
// ([MQTT-3.3.1-5]).
func (r *Retained[M]) Set(topic string, m M) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.root
	for _, level := range strings.Split(topic, "/") {
		c := n.children[level]
		if c == nil {
			if n.children == nil {
				n.children = map[string]*rnode[M]{}
			}
			c = &rnode[M]{}
			n.children[level] = c
		}
		n = c
	}
	if !n.has {
		r.n++
	}
	n.topic, n.msg, n.has = topic, m, true
}

// Delete removes the retained message of topic ([MQTT-3.3.1-10]) and
// reports whether there was one.
func (r *Retained[M]) Delete(topic string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	levels := strings.Split(topic, "/")
	path := []*rnode[M]{r.root}
	n := r.root
	for _, level := range levels {
		if n = n.children[level]; n == nil {
			return false
		}
		path = append(path, n)
	}
	if !n.has {
		return false
	}
	var zero M
	n.topic, n.msg, n.has = "", zero, false
	r.n--
	for i := len(levels) - 1; i >= 0; i-- {
		c := path[i+1]
		if c.has || len(c.children) > 0 {
			break
		}
		delete(path[i].children, levels[i])
	}
	return true
}

// Get returns the retained message of a topic.
func (r *Retained[M]) Get(topic string) (M, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := r.root
	for _, level := range strings.Split(topic, "/") {
		if n = n.children[level]; n == nil {
			var zero M
			return zero, false
		}
	}
	return n.msg, n.has
}

// Len returns the number of retained messages.
func (r *Retained[M]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n
}

// Match calls f for every retained message whose topic matches filter.
// f runs under the read lock and must not modify the store. It costs the
// filter's depth plus the nodes under a wildcard, and allocates nothing
// per level.
func (r *Retained[M]) Match(filter string, f func(topic string, m M)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.match(r.root, filter, true, f)
}

func (r *Retained[M]) match(n *rnode[M], filter string, root bool, f func(string, M)) {
	level, rest, more := strings.Cut(filter, "/")
	switch level {
	case "#":
		// "a/#" matches "a" itself ([MQTT-4.7.1-2]).
		if !root && n.has {
			f(n.topic, n.msg)
		}
		for l, c := range n.children {
			if root && strings.HasPrefix(l, "$") {
				continue // [MQTT-4.7.2-1]
			}
			r.all(c, f)
		}
	case "+":
		for l, c := range n.children {
			if root && strings.HasPrefix(l, "$") {
				continue // [MQTT-4.7.2-1]
			}
			r.step(c, rest, more, f)
		}
	default:
		if c := n.children[level]; c != nil {
			r.step(c, rest, more, f)
		}
	}
}

func (r *Retained[M]) step(c *rnode[M], rest string, more bool, f func(string, M)) {
	if more {
		r.match(c, rest, false, f)
	} else if c.has {
		f(c.topic, c.msg)
	}
}

// all reports every message at or under n, walking the nodes with an
// explicit stack: a topic may be deep, and a recursion per level would
// grow the goroutine's stack with it.
func (r *Retained[M]) all(n *rnode[M], f func(string, M)) {
	stack := []*rnode[M]{n}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.has {
			f(n.topic, n.msg)
		}
		for _, c := range n.children {
			stack = append(stack, c)
		}
	}
}
