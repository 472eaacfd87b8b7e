// Package cluster makes several broker nodes one MQTT broker over NATS:
// each node embeds a NATS server routed to its peers (or connects to an
// existing NATS cluster), and Cluster implements the broker layer's
// Bridge, so the broker itself stays a single node's and nothing here is
// on its path without the cluster flags.
//
// How data flows:
//
//   - A message routed on a node goes to its local subscribers, then to
//     Forward. QoS 0 is published on core NATS to mq.m.<topic> (escaped
//     level by level, subject.go), which reaches only nodes subscribed to
//     a matching subject (Subscribed keeps one NATS subscription per
//     distinct filter per node). QoS 1/2 go into the replicated stream
//     MQ_MSGS; the publisher's acknowledgement waits for JetStream's.
//     Retained messages also go into MQ_RETAIN.
//   - Each node reads MQ_MSGS through its own durable consumer and
//     routes what others published (broker.RouteRemote), MQ_RETAIN
//     through an ordered consumer into its retained store
//     (broker.ApplyRetained), and core messages from one channel,
//     dropping the copies overlapping filters bring. Shared
//     subscriptions are NATS queue subscriptions on a second connection:
//     one node per message, then one member there (broker.RouteShared).
//   - Sessions: the bucket MQ_SESS names each client id's owner node and
//     holds persistent sessions' subscriptions and connections' wills.
//     A CONNECT claims it by compare-and-set (Claim) and asks the old
//     owner to hand the session over (handover, broker.HandOver).
//   - A node's death: every node writes a heartbeat and checkpoint to
//     MQ_NODES each second (the log position its sessions' clients have
//     acknowledged everything up to). A session whose node is gone is
//     taken up from its record where its client reconnects, and the log
//     is replayed to it from that checkpoint; the wills the dead node's
//     connections left are published by the node that takes them out of
//     the registry first (watchNodes).
//
// Files: cluster.go (start, streams, stop), forward.go (messages between
// nodes), log.go (the log's consumer, checkpoints, replay), sessions.go
// (registry, handover, wills), node.go (the embedded server), subject.go
// (topics as subjects).
package cluster
