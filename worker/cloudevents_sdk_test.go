package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	cejetstream "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// sdkReceiver runs the CloudEvents Go SDK's JetStream receiver, as an event
// pipeline would, on the events stored in stream under subject, until the
// test ends.
func sdkReceiver(t *testing.T, env *testEnv, stream, subject string) <-chan cloudevents.Event {
	t.Helper()
	// The SDK's consumer subscribes with the older JetStream API: an
	// ephemeral push consumer on subject, in the stream the worker created.
	consumer, err := cejetstream.NewConsumerFromConn(natstest.Connect(t, env.ns), stream, subject, nil, nil)
	require.NoError(t, err)
	client, err := cloudevents.NewClient(consumer)
	require.NoError(t, err)
	events := make(chan cloudevents.Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() {
		stopped <- client.StartReceiver(ctx, func(event cloudevents.Event) { events <- event })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-stopped:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("the CloudEvents receiver did not stop in 10s")
		}
	})
	return events
}

// nextEvent waits for the receiver's next event.
func nextEvent(t *testing.T, events <-chan cloudevents.Event) cloudevents.Event {
	t.Helper()
	select {
	case event := <-events:
		return event
	case <-time.After(10 * time.Second):
		t.Fatal("no CloudEvent within 10s")
		return cloudevents.Event{}
	}
}

// storedEvent returns the last message stored in stream on subject.
func (e *testEnv) storedEvent(t *testing.T, stream, subject string) (data []byte, header nats.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, stream)
	require.NoError(t, err)
	msg, err := s.GetLastMsgForSubject(ctx, subject)
	require.NoError(t, err)
	return msg.Data, msg.Header
}

// A pipeline built on the CloudEvents Go SDK receives every result and
// settled event as a CloudEvent: the attributes the worker promises, the
// result JSON byte for byte as the data, and the request's traceparent as
// the distributed tracing extension.
func TestTheCloudEventsSDKReceivesResultsAndSettledEvents(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, SettleAfter: 100 * time.Millisecond})
	env.startWorker(t, followConfig(ModeJetStream), env.client(t, nil)) // creates the streams
	resultEvents := sdkReceiver(t, env, ResultStream, messages.SubjectResults)
	settledEvents := sdkReceiver(t, env, SettledStream, messages.SubjectSettled)

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		kind        messages.Kind
		traceparent string
	}{
		{messages.KindRefresh, tp},
		{"azure-bulkjob", ""},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			id := messages.NewRequestID()
			header := nats.Header{}
			if tc.traceparent != "" {
				header.Set(messages.HeaderTraceparent, tc.traceparent)
			}
			env.publish(t, tc.kind, `{"id":"`+id+`","request_id":"sdk-`+string(tc.kind)+`","follow":true}`, header)

			for _, want := range []struct {
				events  <-chan cloudevents.Event
				stream  string
				subject string
				ceType  string
				suffix  string // of the event's id
			}{
				{resultEvents, ResultStream, tc.kind.ResultSubject(), "com.github.cckm.cancel.result", ".result"},
				{settledEvents, SettledStream, tc.kind.SettledSubject(), "com.github.cckm.cancel.settled", ".settled"},
			} {
				event := nextEvent(t, want.events)
				data, stored := env.storedEvent(t, want.stream, want.subject)
				var result messages.Result
				require.NoError(t, json.Unmarshal(data, &result))
				completedAt, err := time.Parse(time.RFC3339Nano, result.CompletedAt.String())
				require.NoError(t, err)

				require.NoError(t, event.Validate())
				assert.Equal(t, "1.0", event.SpecVersion())
				assert.Equal(t, stored.Get(messages.HeaderMsgID), event.ID(), "the id is the event's Nats-Msg-Id")
				assert.Equal(t, "sdk-"+string(tc.kind)+want.suffix, event.ID())
				assert.Equal(t, "cckm-cancel-worker", event.Source())
				assert.Equal(t, want.ceType, event.Type())
				assert.Equal(t, id, event.Subject(), "the subject is the job id")
				assert.True(t, completedAt.Equal(event.Time()), "time %s is completed_at %s", event.Time(), completedAt)
				assert.Equal(t, "application/json", event.DataContentType())
				assert.Equal(t, string(data), string(event.Data()), "the data is the result JSON byte for byte")
				assert.Equal(t, tc.kind, result.Kind)
				if tc.traceparent != "" {
					assert.Equal(t, tc.traceparent, event.Extensions()["traceparent"], "the request's traceparent is carried through")
				} else {
					assert.NotContains(t, event.Extensions(), "traceparent", "no traceparent is invented")
				}
			}
		})
	}
}
