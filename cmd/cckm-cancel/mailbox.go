package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// mailbox sorts the messages of the run's subscriptions to the requests
// waiting for them. Its maps are fixed when it is made, so deliver needs no
// lock.
type mailbox struct {
	byIndex     []*pending
	byRequestID map[string]*pending
}

// pending is where one request's answers land. Each channel holds the first
// answer of its sort; copies (a redelivery's result, or the result that core
// mode sends both to the reply subject and to Cckm-Reply-To) are dropped.
type pending struct {
	request      request
	result       chan received
	settled      chan received
	noResponders chan struct{}
}

// received is an event as decoded and as it came.
type received struct {
	result messages.Result
	raw    []byte
}

func newMailbox(requests []request) *mailbox {
	m := &mailbox{
		byIndex:     make([]*pending, len(requests)),
		byRequestID: make(map[string]*pending, len(requests)),
	}
	for i, req := range requests {
		p := &pending{
			request:      req,
			result:       make(chan received, 1),
			settled:      make(chan received, 1),
			noResponders: make(chan struct{}, 1),
		}
		m.byIndex[i] = p
		m.byRequestID[req.requestID] = p
	}
	return m
}

// deliver is the subscriptions' handler. A result is matched by request_id
// (it comes to the run's own inbox); a settled event by request_id, kind and
// job id, since the settled subject carries every sender's events and
// another job's may bear the same request_id; a "no responders" status by
// the index at the end of the reply subject it came to. Anything else
// (another run's settled events, a stream's acknowledgement) is ignored.
func (m *mailbox) deliver(msg *nats.Msg) {
	if msg.Header.Get("Status") == "503" && len(msg.Data) == 0 {
		index, err := strconv.Atoi(msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:])
		if err == nil && index >= 0 && index < len(m.byIndex) {
			offer(m.byIndex[index].noResponders, struct{}{})
		}
		return
	}
	var event messages.Result
	if err := json.Unmarshal(msg.Data, &event); err != nil || event.RequestID == "" {
		return
	}
	p, ok := m.byRequestID[event.RequestID]
	if !ok {
		return
	}
	var raw bytes.Buffer
	if err := json.Compact(&raw, msg.Data); err != nil {
		return
	}
	if event.Settled != nil {
		if event.Kind != p.request.kind || !strings.EqualFold(event.ID, p.request.id) {
			return // another job's, or another kind's
		}
		offer(p.settled, received{event, raw.Bytes()})
	} else {
		offer(p.result, received{event, raw.Bytes()})
	}
}

// offer puts v in ch unless ch is full.
func offer[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}
