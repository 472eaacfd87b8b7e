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
	msg      M
	has      bool
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
	n.msg, n.has = m, true
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
	n.msg, n.has = zero, false
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
// f runs under the read lock and must not modify the store.
func (r *Retained[M]) Match(filter string, f func(topic string, m M)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.match(r.root, filter, "", true, f)
}

func (r *Retained[M]) match(n *rnode[M], filter, prefix string, root bool, f func(string, M)) {
	level, rest, more := strings.Cut(filter, "/")
	join := func(l string) string {
		if root {
			return l
		}
		return prefix + "/" + l
	}
	switch level {
	case "#":
		// "a/#" matches "a" itself ([MQTT-4.7.1-2]).
		if !root && n.has {
			f(prefix, n.msg)
		}
		for l, c := range n.children {
			if root && strings.HasPrefix(l, "$") {
				continue // [MQTT-4.7.2-1]
			}
			r.all(c, join(l), f)
		}
	case "+":
		for l, c := range n.children {
			if root && strings.HasPrefix(l, "$") {
				continue // [MQTT-4.7.2-1]
			}
			r.step(c, rest, more, join(l), f)
		}
	default:
		if c := n.children[level]; c != nil {
			r.step(c, rest, more, join(level), f)
		}
	}
}

func (r *Retained[M]) step(c *rnode[M], rest string, more bool, topic string, f func(string, M)) {
	if more {
		r.match(c, rest, topic, false, f)
	} else if c.has {
		f(topic, c.msg)
	}
}

func (r *Retained[M]) all(n *rnode[M], topic string, f func(string, M)) {
	if n.has {
		f(topic, n.msg)
	}
	for l, c := range n.children {
		r.all(c, topic+"/"+l, f)
	}
}
