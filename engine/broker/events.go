package broker

// Message events for scripts (onMqQueued, onMqDropped, onMqAcked): what
// happens to a message after routing, told to the script layer through
// Hooks.MessageEvent. They arise where no Lua worker is held (under a
// session's lock, on a subscriber's reader acknowledging), so they are
// queued here, bounded, and handed over by one goroutine, in the order
// they happened; the script layer runs them on a worker. Only the kinds
// the scripts handle are made (Hooks.EventsWanted); when the queue is
// full an event is dropped and counted (Stats.EventsDropped), never
// waited for.

import "sync"

// EventKind is what happened to a message.
type EventKind uint8

// The event kinds, also the bits of Hooks.EventsWanted.
const (
	EventQueued  EventKind = 1 << iota // queued for an offline session
	EventDropped                       // dropped, with a reason
	EventAcked                         // a QoS 1/2 delivery acknowledged by its subscriber
)

// MessageEvent is one event: the subscriber's client id (empty for a
// message no subscription matched), the message, and for drops why:
// "queue_full", "no_subscribers", "expired", "too_large", "script".
type MessageEvent struct {
	Kind     EventKind
	ClientID string
	Message  *Message
	QoS      byte
	Reason   string
}

// eventQueueSize bounds the events waiting for the scripts.
const eventQueueSize = 4096

type eventQueue struct {
	once sync.Once
	ch   chan MessageEvent
}

// emit queues an event of kind if the scripts want that kind. It never
// blocks and takes no lock: it may run under a session's.
func (k *Broker) emit(kind EventKind, clientID string, m *Message, qos byte, reason string) {
	if k.hooks == nil || k.hooks.EventsWanted()&kind == 0 {
		return
	}
	k.events.once.Do(func() {
		k.events.ch = make(chan MessageEvent, eventQueueSize)
		go func() {
			for ev := range k.events.ch {
				k.hooks.MessageEvent(ev)
			}
		}()
	})
	m.own()
	select {
	case k.events.ch <- MessageEvent{Kind: kind, ClientID: clientID, Message: m, QoS: qos, Reason: reason}:
	default:
		k.Stats.EventsDropped.Add(1)
	}
}
