package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// The files of deploy/nats, by the stream they define.
var streamFiles = map[string]string{
	worker.RequestStream:    "stream-requests.json",
	worker.ResultStream:     "stream-results.json",
	worker.DeadLetterStream: "stream-dead.json",
}

const consumerFile = "consumer.json"

// decodeStrict decodes a JSON file, refusing fields T does not have: a
// misspelt field would otherwise be dropped silently by the server too.
func decodeStrict[T any](t *testing.T, path string) T {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(readFile(t, path)))
	dec.DisallowUnknownFields()
	var v T
	require.NoError(t, dec.Decode(&v), "%s", path)
	return v
}

func loadStreamFile(t *testing.T, stream string) jetstream.StreamConfig {
	t.Helper()
	return decodeStrict[jetstream.StreamConfig](t, filepath.Join(natsDir, streamFiles[stream]))
}

func loadConsumerFile(t *testing.T) jetstream.ConsumerConfig {
	t.Helper()
	return decodeStrict[jetstream.ConsumerConfig](t, filepath.Join(natsDir, consumerFile))
}

// deployedWorkerConfig is the worker.Config the Kubernetes ConfigMap gives,
// as far as it shapes the streams and the consumer.
func deployedWorkerConfig(t *testing.T, provision bool) worker.Config {
	t.Helper()
	data := loadManifests(t).configMap.Data
	cfg := worker.Config{Mode: worker.ModeJetStream, Provision: provision, ShutdownTimeout: 5 * time.Second}
	if v, ok := data["WORKER_CONCURRENCY"]; ok {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		cfg.Concurrency = n
	}
	if _, ok := data["WORKER_ACK_WAIT"]; ok {
		cfg.AckWait = durationSetting(t, data, "WORKER_ACK_WAIT", worker.DefaultAckWait)
	}
	return cfg
}

// The values written out in worker/provision.go, checked field by field so
// that a failure names the field.
func TestTheStreamFilesHoldWhatTheWorkerProvisions(t *testing.T) {
	deadSubjects := make([]string, 0, len(messages.Kinds))
	for _, kind := range messages.Kinds {
		deadSubjects = append(deadSubjects, kind.DeadLetterSubject())
	}
	for _, tc := range []struct {
		stream     string
		subjects   []string
		retention  jetstream.RetentionPolicy
		maxAge     time.Duration
		duplicates time.Duration
	}{
		{worker.RequestStream, []string{messages.SubjectRefresh, messages.SubjectBulkJob}, jetstream.WorkQueuePolicy, 0, 2 * time.Minute},
		{worker.ResultStream, []string{messages.SubjectResults}, jetstream.LimitsPolicy, worker.DefaultResultRetention, worker.DefaultDuplicateWindow},
		{worker.DeadLetterStream, deadSubjects, jetstream.LimitsPolicy, 30 * 24 * time.Hour, 2 * time.Minute},
	} {
		t.Run(tc.stream, func(t *testing.T) {
			cfg := loadStreamFile(t, tc.stream)
			assert.Equal(t, tc.stream, cfg.Name)
			assert.Equal(t, tc.subjects, cfg.Subjects)
			assert.Equal(t, tc.retention, cfg.Retention)
			assert.Equal(t, jetstream.FileStorage, cfg.Storage)
			assert.Equal(t, tc.maxAge, cfg.MaxAge)
			assert.Equal(t, tc.duplicates, cfg.Duplicates)
			assert.Equal(t, jetstream.DiscardOld, cfg.Discard)
			assert.Equal(t, 1, cfg.Replicas, "one replica; raise it on a cluster (README)")
			assert.NotEmpty(t, cfg.Description)
		})
	}
}

func TestTheConsumerFileHoldsWhatTheWorkerProvisions(t *testing.T) {
	deployed := deployedWorkerConfig(t, true)
	concurrency := deployed.Concurrency
	if concurrency == 0 {
		concurrency = worker.DefaultConcurrency
	}
	ackWait := deployed.AckWait
	if ackWait == 0 {
		ackWait = worker.DefaultAckWait
	}
	cfg := loadConsumerFile(t)
	assert.Equal(t, worker.ConsumerName, cfg.Durable)
	assert.Equal(t, jetstream.AckExplicitPolicy, cfg.AckPolicy)
	assert.Equal(t, ackWait, cfg.AckWait, "ack_wait against WORKER_ACK_WAIT")
	assert.Equal(t, -1, cfg.MaxDeliver, "the worker counts deliveries itself")
	assert.Equal(t, max(1000, 4*concurrency), cfg.MaxAckPending, "max_ack_pending against WORKER_CONCURRENCY")
	assert.Equal(t, jetstream.DeliverAllPolicy, cfg.DeliverPolicy)
	assert.Empty(t, cfg.FilterSubject, "the consumer reads both request subjects")
	assert.Empty(t, cfg.BackOff, "the worker chooses redelivery delays (NakWithDelay)")
}

// assets are the server's view of the streams and the consumer.
type assets struct {
	streams  map[string]jetstream.StreamConfig
	consumer jetstream.ConsumerConfig
}

// readAssets fetches the configurations the server holds, without the
// metadata the server adds (_nats.*).
func readAssets(t *testing.T, js jetstream.JetStream) assets {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := assets{streams: map[string]jetstream.StreamConfig{}}
	for name := range streamFiles {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err, "stream %s", name)
		cfg := s.CachedInfo().Config
		cfg.Metadata = withoutServerMetadata(cfg.Metadata)
		a.streams[name] = cfg
	}
	c, err := js.Consumer(ctx, worker.RequestStream, worker.ConsumerName)
	require.NoError(t, err, "consumer %s", worker.ConsumerName)
	a.consumer = c.CachedInfo().Config
	a.consumer.Metadata = withoutServerMetadata(a.consumer.Metadata)
	return a
}

func withoutServerMetadata(metadata map[string]string) map[string]string {
	out := maps.Clone(metadata)
	maps.DeleteFunc(out, func(k, _ string) bool { return strings.HasPrefix(k, "_nats.") })
	if len(out) == 0 {
		return nil
	}
	return out
}

// createFromFiles does what `nats stream add --config` and `nats consumer
// add --config` do: send the files' configurations to the server.
func createFromFiles(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name := range streamFiles {
		_, err := js.CreateStream(ctx, loadStreamFile(t, name))
		require.NoError(t, err, "the server refuses %s", streamFiles[name])
	}
	_, err := js.CreateConsumer(ctx, worker.RequestStream, loadConsumerFile(t))
	require.NoError(t, err, "the server refuses %s", consumerFile)
}

// The server accepts the files, and what it makes of them is what it makes
// of the worker's own provisioning, field for field.
func TestTheServerMakesTheSameAssetsFromTheFilesAsFromTheWorker(t *testing.T) {
	byWorker := natstest.RunServer(t, nil)
	w := runWorker(t, deployedWorkerConfig(t, true), byWorker)
	require.Eventually(t, func() bool { return w.Ready() == nil }, 10*time.Second, 20*time.Millisecond,
		"the worker provisions and binds")
	jsWorker, err := jetstream.New(natstest.Connect(t, byWorker))
	require.NoError(t, err)
	provisioned := readAssets(t, jsWorker)

	byFiles := natstest.RunServer(t, nil)
	jsFiles, err := jetstream.New(natstest.Connect(t, byFiles))
	require.NoError(t, err)
	createFromFiles(t, jsFiles)
	fromFiles := readAssets(t, jsFiles)

	for name := range streamFiles {
		assert.Equal(t, provisioned.streams[name], fromFiles.streams[name], "stream %s", name)
	}
	assert.Equal(t, provisioned.consumer, fromFiles.consumer, "consumer %s", worker.ConsumerName)
}

// With WORKER_PROVISION=false the worker binds to what the files made.
func TestAWorkerThatDoesNotProvisionBindsToTheFilesAssets(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	createFromFiles(t, js)
	w := runWorker(t, deployedWorkerConfig(t, false), ns)
	require.Eventually(t, func() bool { return w.Ready() == nil }, 10*time.Second, 20*time.Millisecond,
		"the worker binds to the consumer made from consumer.json")
}

// runWorker runs a worker on its own connection to ns, and stops it when
// the test ends.
func runWorker(t *testing.T, cfg worker.Config, ns *server.Server) *worker.Worker {
	t.Helper()
	nc := natstest.Connect(t, ns)
	// A real client, so that it is a worker.Canceler whatever that asks;
	// it is never called, as no request is published.
	client, err := cckmclient.New(cckmclient.Config{
		BaseURL:     "http://127.0.0.1:1",
		Credentials: cckmclient.Credentials{Token: "unused"},
	})
	require.NoError(t, err)
	w, err := worker.New(cfg, nc, client, zerolog.Nop(), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return w
}
