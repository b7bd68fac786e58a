package worker

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// Every result and settled event carries its CloudEvents attributes as
// ce-* headers (binary content mode), its JSON payload unchanged.
func TestResultsAndSettledEventsAreCloudEvents(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, SettleAfter: 100})
	results := env.watchResults(t, messages.SubjectResults)
	settledEvents := env.watchResults(t, messages.SubjectSettled)
	env.startWorker(t, followConfig(ModeJetStream), env.client(t, nil))

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, kind := range []messages.Kind{messages.KindRefresh, "azure-bulkjob"} {
		id := messages.NewRequestID()
		env.publish(t, kind, `{"id":"`+id+`","request_id":"ce-`+string(kind)+`","follow":true}`,
			nats.Header{messages.HeaderTraceparent: {tp}})
		for _, watch := range []struct {
			w        *resultWatch
			ceType   string
			idSuffix string
		}{
			{results, messages.CloudEventTypeResult, ".result"},
			{settledEvents, messages.CloudEventTypeSettled, ".settled"},
		} {
			event, msg := watch.w.next(t)
			require.Equal(t, id, event.ID)
			h := msg.Header
			assert.Equal(t, "1.0", h.Get("ce-specversion"))
			assert.Equal(t, "ce-"+string(kind)+watch.idSuffix, h.Get("ce-id"))
			assert.Equal(t, h.Get(messages.HeaderMsgID), h.Get("ce-id"), "ce-id is the event's Nats-Msg-Id")
			assert.Equal(t, "cckm-cancel-worker", h.Get("ce-source"))
			assert.Equal(t, watch.ceType, h.Get("ce-type"))
			assert.Equal(t, id, h.Get("ce-subject"))
			assert.Equal(t, event.CompletedAt.String(), h.Get("ce-time"))
			assert.Equal(t, "application/json", h.Get("ce-datacontenttype"))
			assert.Equal(t, tp, h.Get("ce-traceparent"))
			assert.Equal(t, string(kind), string(event.Kind), "the payload is the result JSON")
		}
	}
}
