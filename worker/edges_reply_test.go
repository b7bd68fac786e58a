package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// A Cckm-Reply-To that is not a literal subject the worker may answer on
// could make it publish into the JetStream API, forge follow tasks or
// settled events, or re-inject a request: such a request is rejected, no
// call is made, and nothing reaches that subject.
func TestACckmReplyToOutsideTheSafeSubjectsIsRejectedAndNothingIsSentThere(t *testing.T) {
	for _, mode := range []Mode{ModeJetStream, ModeCore} {
		t.Run(string(mode), func(t *testing.T) {
			env := newTestEnv(t, cckmtest.Options{AnyJob: true})
			results := env.watchResults(t, messages.SubjectResults)
			env.startWorker(t, testConfig(mode), env.client(t, nil))
			for _, reply := range []string{"$JS.API.INFO", "cckm.cancel.refresh", "a.*", "a..b"} {
				watched := reply
				if reply == "a..b" {
					watched = "a.>" // a subscription cannot be made on a..b itself
				}
				sub, err := env.nc.SubscribeSync(watched)
				require.NoError(t, err)
				require.NoError(t, env.nc.Flush())

				id := messages.NewRequestID()
				msg := &nats.Msg{Subject: messages.KindRefresh.RequestSubject(), Data: []byte(id),
					Header: nats.Header{messages.HeaderReplyTo: {reply}}}
				if mode == ModeCore {
					require.NoError(t, env.nc.PublishMsg(msg))
				} else {
					env.publish(t, messages.KindRefresh, id, msg.Header)
				}
				result, _ := results.next(t)
				assert.Equal(t, id, result.ID, reply)
				assert.Equal(t, messages.StatusRejected, result.Status, reply)
				if assert.NotNil(t, result.Error, reply) {
					assert.Equal(t, messages.CodeInvalidRequest, result.Error.Code)
					assert.Contains(t, result.Error.Message, "Cckm-Reply-To")
				}
				assert.Empty(t, env.cm.CallsFor(id), "no call for %q", reply)
				for {
					got, err := sub.NextMsg(200 * time.Millisecond)
					if err != nil {
						break
					}
					if reply == "cckm.cancel.refresh" && string(got.Data) == id {
						continue // the request itself
					}
					assert.NotContains(t, string(got.Data), id, "something reached %q", reply)
				}
				require.NoError(t, sub.Unsubscribe())
			}
		})
	}
}

// A core-mode worker beside a stream on the request subjects would see a
// jetstream-mode worker handle every request again, and nats req would get
// the stream's acknowledgement: it says so at start, once, naming the
// stream.
func TestACoreModeWorkerSaysOnceThatAStreamHoldsTheRequestSubjects(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := env.js.CreateStream(ctx, requestStreamConfig())
	require.NoError(t, err)
	w := env.startWorker(t, testConfig(ModeCore), env.client(t, nil))
	logs := w.logs.String()
	assert.Equal(t, 1, strings.Count(logs, "a stream holds the request subjects"), logs)
	assert.Contains(t, logs, `"stream":"`+RequestStream+`"`)
}

// In core mode the request's own NATS reply subject is answered too, so it
// is held to the same rule as Cckm-Reply-To: one that is not a literal
// subject the worker may answer on (such as $JS.API.STREAM.PURGE.<stream>,
// or a request subject, which would cancel the job again) rejects the
// request, no call is made, and nothing reaches that subject.
func TestACoreModeNATSReplySubjectOutsideTheSafeSubjectsIsRejectedAndNothingIsSentThere(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	results := env.watchResults(t, messages.SubjectResults)
	env.startWorker(t, testConfig(ModeCore), env.client(t, nil))
	for _, reply := range []string{"$JS.API.INFO", "$JS.API.STREAM.PURGE." + ResultStream, "cckm.cancel.refresh", "a.*", "a..b"} {
		watched := reply
		if reply == "a..b" {
			watched = "a.>" // a subscription cannot be made on a..b itself
		}
		sub, err := env.nc.SubscribeSync(watched)
		require.NoError(t, err)
		require.NoError(t, env.nc.Flush())

		id := messages.NewRequestID()
		require.NoError(t, env.nc.PublishMsg(&nats.Msg{Subject: messages.KindRefresh.RequestSubject(), Reply: reply, Data: []byte(id)}))
		result, _ := results.next(t)
		assert.Equal(t, id, result.ID, reply)
		assert.Equal(t, messages.StatusRejected, result.Status, reply)
		if assert.NotNil(t, result.Error, reply) {
			assert.Equal(t, messages.CodeInvalidRequest, result.Error.Code)
			assert.Contains(t, result.Error.Message, "reply subject", reply)
		}
		assert.Empty(t, env.cm.CallsFor(id), "no call for %q", reply)
		for {
			got, err := sub.NextMsg(200 * time.Millisecond)
			if err != nil {
				break
			}
			if reply == "cckm.cancel.refresh" && string(got.Data) == id {
				continue // the request itself
			}
			assert.NotContains(t, string(got.Data), id, "something reached %q", reply)
		}
		require.NoError(t, sub.Unsubscribe())
	}
}
