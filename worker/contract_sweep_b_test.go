package worker

// Delivery and following as the contract names them, checked with the
// literal names an operator types (stream, consumer, queue group,
// subjects), not the package's constants.

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// contractRequestSubjects is every request subject, one per job family
// CipherTrust Manager can cancel.
var contractRequestSubjects = []string{
	"cckm.cancel.refresh", "cckm.cancel.bulkjob", "cckm.cancel.aws-sync", "cckm.cancel.aws-cks-sync",
	"cckm.cancel.azure-sync", "cckm.cancel.azure-certificate-sync", "cckm.cancel.azure-secret-sync",
	"cckm.cancel.azure-bulkjob", "cckm.cancel.google-sync", "cckm.cancel.oci-sync", "cckm.cancel.sap-sync",
	"cckm.cancel.sfdc-key-sync", "cckm.cancel.sfdc-certificate-sync", "cckm.cancel.luna-refresh",
	"cckm.cancel.luna-sync", "cckm.cancel.dsm-refresh",
}

func TestAJetStreamWorkerProvisionsTheStreamsAndTheDurablePullConsumerByTheirNames(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	cfg := testConfig(ModeJetStream)
	env.startWorker(t, cfg, env.client(t, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	requests, err := env.js.Stream(ctx, "CCKM_CANCEL")
	require.NoError(t, err, "the request stream")
	info, err := requests.Info(ctx)
	require.NoError(t, err)
	for _, subject := range contractRequestSubjects {
		assert.True(t, filterCovers(info.Config.Subjects, subject), "CCKM_CANCEL holds %s: %v", subject, info.Config.Subjects)
	}
	assert.False(t, filterCovers(info.Config.Subjects, "cckm.cancel.refresh.result"), "CCKM_CANCEL must not take results")
	assert.EqualValues(t, 64<<10, info.Config.MaxMsgSize, "max_msg_size: a payload over 64 KiB is refused")

	consumer, err := env.js.Consumer(ctx, "CCKM_CANCEL", "cckm-cancel-worker")
	require.NoError(t, err, "the durable consumer cckm-cancel-worker")
	ci, err := consumer.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, "cckm-cancel-worker", ci.Config.Durable, "durable")
	assert.Empty(t, ci.Config.DeliverSubject, "a pull consumer")
	assert.Equal(t, jetstream.AckExplicitPolicy, ci.Config.AckPolicy)
	assert.True(t, ci.Config.MaxDeliver == -1 || ci.Config.MaxDeliver >= cfg.MaxDeliveries,
		"MaxDeliver %d: unlimited, or not below WORKER_MAX_DELIVERIES", ci.Config.MaxDeliver)
	filters := ci.Config.FilterSubjects
	if ci.Config.FilterSubject != "" {
		filters = append(filters, ci.Config.FilterSubject)
	}
	if len(filters) > 0 {
		for _, subject := range contractRequestSubjects {
			assert.True(t, filterCovers(filters, subject), "the consumer's filter takes %s: %v", subject, filters)
		}
	}

	results, err := env.js.Stream(ctx, "CCKM_CANCEL_RESULTS")
	require.NoError(t, err, "the results stream")
	ri, err := results.Info(ctx)
	require.NoError(t, err)
	assert.Contains(t, ri.Config.Subjects, "cckm.cancel.*.result")
}

func TestCoreModeWorkersSubscribeEveryRequestSubjectInTheQueueGroupCckmCancelWorker(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	env.startWorker(t, testConfig(ModeCore), env.client(t, nil))
	env.startWorker(t, testConfig(ModeCore), env.client(t, nil))

	subs, err := env.ns.Subsz(&server.SubszOptions{Subscriptions: true, Limit: 10000})
	require.NoError(t, err)
	queues := map[string][]string{} // request subject -> queue group of each subscription
	for _, sub := range subs.Subs {
		queues[sub.Subject] = append(queues[sub.Subject], sub.Queue)
	}
	for _, subject := range contractRequestSubjects {
		got := queues[subject]
		sort.Strings(got)
		assert.Equal(t, []string{"cckm-cancel-worker", "cckm-cancel-worker"}, got, "the two workers' subscriptions to %s", subject)
	}

	// And so each request is answered once, by one of them.
	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	results := env.watchResults(t, messages.KindRefresh.ResultSubject())
	r, _ := env.send(t, ModeCore, messages.KindRefresh, id)
	assert.Equal(t, messages.StatusCanceled, r.Status)
	_, msg := results.next(t)
	require.NotNil(t, msg)
	_, err = results.sub.NextMsg(300 * time.Millisecond)
	assert.Error(t, err, "a second result for one request")
	assert.Len(t, env.cm.CallsFor(id), 1, "one cancel call for one request")
}

func TestWithoutFollowNoSettledEventIsPublished(t *testing.T) {
	for _, mode := range []Mode{ModeJetStream, ModeCore} {
		t.Run(string(mode), func(t *testing.T) {
			env := newTestEnv(t, cckmtest.Options{SettleAfter: 50 * time.Millisecond})
			settled := env.watchResults(t, "cckm.cancel.*.settled")
			cfg := followConfig(mode) // WORKER_FOLLOW stays false
			env.startWorker(t, cfg, env.client(t, nil))

			id := messages.NewRequestID()
			env.cm.AddJob(cckmtest.Refresh, id)
			r, _ := env.send(t, mode, messages.KindRefresh, `{"id":"`+id+`","follow":false}`)
			require.Equal(t, messages.StatusCanceled, r.Status)
			_, err := settled.sub.NextMsg(time.Second)
			assert.Error(t, err, "a settled event though no follow was asked for")
			assert.Len(t, env.cm.CallsFor(id), 1, "no GET polls: only the cancel")
		})
	}
}
