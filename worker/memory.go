package worker

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// messageKey names one stored message for as long as it lives: its stream
// sequence and the time it was stored. A stream deleted and created again
// starts its sequences over, but not its times, so new requests never
// inherit what the worker learned of old ones.
type messageKey struct {
	sequence uint64
	stored   int64
}

func keyOf(meta *jetstream.MsgMetadata) messageKey {
	return messageKey{sequence: meta.Sequence.Stream, stored: meta.Timestamp.UnixNano()}
}

// priorDeliveries is what earlier deliveries of one request learned on
// this instance: their HTTP attempts and the last HTTP status received,
// and, when a delivery finished but could not publish its result, that
// outcome, so that the next delivery publishes it without calling
// CipherTrust Manager again.
type priorDeliveries struct {
	attempts   int
	httpStatus int
	finished   *outcome
}

// deliveryMemory remembers priorDeliveries by message, for as long as a
// redelivery can take (horizon). A redelivery that lands on another
// instance never comes back for its entry, so entries older than the
// horizon are swept; the map cannot grow past what the horizon holds.
type deliveryMemory struct {
	mu        sync.Mutex
	horizon   time.Duration
	entries   map[messageKey]memoryEntry
	lastSweep time.Time
}

type memoryEntry struct {
	prior priorDeliveries
	at    time.Time
}

func newDeliveryMemory(horizon time.Duration) *deliveryMemory {
	return &deliveryMemory{horizon: horizon, entries: map[messageKey]memoryEntry{}}
}

func (m *deliveryMemory) load(key messageKey) priorDeliveries {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.entries[key].prior
}

func (m *deliveryMemory) store(key messageKey, prior priorDeliveries, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[key] = memoryEntry{prior: prior, at: now}
	if now.Sub(m.lastSweep) >= m.horizon/4 {
		m.lastSweep = now
		for k, e := range m.entries {
			if now.Sub(e.at) > m.horizon {
				delete(m.entries, k)
			}
		}
	}
}

func (m *deliveryMemory) forget(key messageKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, key)
}

// size is the number of entries, for tests.
func (m *deliveryMemory) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}
