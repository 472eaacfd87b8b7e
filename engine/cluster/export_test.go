package cluster

// Replay exposes replay to the package's external tests.
func (c *Cluster) Replay(clientID string, from, to uint64) { c.replay(clientID, from, to) }

// Position exposes the node's log position.
func (c *Cluster) Position() uint64 { return c.pos.Load() }
