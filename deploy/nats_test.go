package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
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

// The stream files of deploy/nats, by the stream they define.
var streamFiles = map[string]string{
	worker.RequestStream:    "stream-requests.json",
	worker.ResultStream:     "stream-results.json",
	worker.DeadLetterStream: "stream-dead.json",
	worker.FollowStream:     "stream-follow.json",
	worker.SettledStream:    "stream-settled.json",
	worker.InFlightStream:   "stream-inflight.json",
}

// consumerFile is a consumer file of deploy/nats and the stream it is added
// to (`nats consumer add <stream> --config <file>`).
type consumerFile struct {
	stream string
	file   string
}

// The consumer files of deploy/nats, by the durable consumer they define.
var consumerFiles = map[string]consumerFile{
	worker.ConsumerName:     {stream: worker.RequestStream, file: "consumer.json"},
	worker.FollowConsumer:   {stream: worker.FollowStream, file: "consumer-follow.json"},
	worker.InFlightConsumer: {stream: worker.InFlightStream, file: "consumer-inflight.json"},
}

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
	file, ok := streamFiles[stream]
	require.True(t, ok, "no file in deploy/nats for stream %s", stream)
	return decodeStrict[jetstream.StreamConfig](t, filepath.Join(natsDir, file))
}

func loadConsumerFile(t *testing.T, consumer string) jetstream.ConsumerConfig {
	t.Helper()
	cf, ok := consumerFiles[consumer]
	require.True(t, ok, "no file in deploy/nats for consumer %s", consumer)
	return decodeStrict[jetstream.ConsumerConfig](t, filepath.Join(natsDir, cf.file))
}

// deployedWorkerConfig is the worker.Config the Kubernetes ConfigMap gives,
// as far as it shapes the streams and the consumers.
func deployedWorkerConfig(t *testing.T, provision bool) worker.Config {
	t.Helper()
	data := loadManifests(t).configMap.Data
	cfg := worker.Config{Mode: worker.ModeJetStream, Provision: provision, ShutdownTimeout: 5 * time.Second}
	if v, ok := data["WORKER_CONCURRENCY"]; ok {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		cfg.Concurrency = n
	}
	if v, ok := data["CCKM_MAX_IN_FLIGHT"]; ok {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		cfg.MaxInFlight = n
	}
	if _, ok := data["WORKER_ACK_WAIT"]; ok {
		cfg.AckWait = durationSetting(t, data, "WORKER_ACK_WAIT", worker.DefaultAckWait)
	}
	return cfg
}

// Every JSON file of deploy/nats is one of the files above: a file the
// tests do not know of would be checked by none of them.
func TestDeployNatsHoldsOnlyKnownFiles(t *testing.T) {
	known := map[string]bool{}
	for _, file := range streamFiles {
		known[file] = true
	}
	for _, cf := range consumerFiles {
		known[cf.file] = true
	}
	entries, err := os.ReadDir(natsDir)
	require.NoError(t, err)
	found := map[string]bool{}
	for _, entry := range entries {
		if strings.HasSuffix(entry.Name(), ".json") {
			assert.True(t, known[entry.Name()], "deploy/nats/%s is not checked by any test", entry.Name())
			found[entry.Name()] = true
		}
	}
	for file := range known {
		assert.True(t, found[file], "deploy/nats/%s is missing", file)
	}
}

// The values written out in worker/provision.go and worker/follow.go,
// checked field by field so that a failure names the field.
func TestTheStreamFilesHoldWhatTheWorkerProvisions(t *testing.T) {
	requestSubjects := make([]string, 0, len(messages.Kinds))
	deadSubjects := make([]string, 0, len(messages.Kinds))
	followSubjects := make([]string, 0, len(messages.Kinds))
	for _, kind := range messages.Kinds {
		requestSubjects = append(requestSubjects, kind.RequestSubject())
		deadSubjects = append(deadSubjects, kind.DeadLetterSubject())
		followSubjects = append(followSubjects, messages.SubjectPrefix+"follow."+string(kind))
	}
	// The kinds table's 16 families, a few of them spelt out, so that a
	// row lost from the table fails here as well as in the files.
	for _, subjects := range [][]string{requestSubjects, deadSubjects, followSubjects} {
		assert.Len(t, subjects, 16)
	}
	assert.Contains(t, requestSubjects, "cckm.cancel.azure-bulkjob")
	assert.Contains(t, deadSubjects, "cckm.cancel.dead.sap-sync")
	assert.Contains(t, followSubjects, "cckm.cancel.follow.luna-sync")
	maxInFlight := deployedWorkerConfig(t, true).MaxInFlight
	if maxInFlight == 0 {
		maxInFlight = worker.DefaultMaxInFlight
	}
	for _, tc := range []struct {
		stream     string
		subjects   []string
		retention  jetstream.RetentionPolicy
		maxAge     time.Duration
		duplicates time.Duration
		discard    jetstream.DiscardPolicy
		maxMsgs    int64
	}{
		{worker.RequestStream, requestSubjects, jetstream.WorkQueuePolicy, 0, 2 * time.Minute, jetstream.DiscardOld, -1},
		{worker.ResultStream, []string{messages.SubjectResults}, jetstream.LimitsPolicy, worker.DefaultResultRetention, worker.DefaultDuplicateWindow, jetstream.DiscardOld, -1},
		{worker.DeadLetterStream, deadSubjects, jetstream.LimitsPolicy, 30 * 24 * time.Hour, 2 * time.Minute, jetstream.DiscardOld, -1},
		{worker.FollowStream, followSubjects, jetstream.WorkQueuePolicy, 0, 10 * time.Minute, jetstream.DiscardOld, -1},
		{worker.SettledStream, []string{messages.SubjectSettled}, jetstream.LimitsPolicy, worker.DefaultResultRetention, worker.DefaultDuplicateWindow, jetstream.DiscardOld, -1},
		// One permit per call in flight, and never one more.
		{worker.InFlightStream, []string{"cckm.cancel.inflight.permit"}, jetstream.LimitsPolicy, 0, 2 * time.Minute, jetstream.DiscardNew, int64(maxInFlight)},
	} {
		t.Run(tc.stream, func(t *testing.T) {
			cfg := loadStreamFile(t, tc.stream)
			assert.Equal(t, tc.stream, cfg.Name)
			assert.Equal(t, tc.subjects, cfg.Subjects)
			assert.Equal(t, tc.retention, cfg.Retention)
			assert.Equal(t, jetstream.FileStorage, cfg.Storage)
			assert.Equal(t, tc.maxAge, cfg.MaxAge)
			assert.Equal(t, tc.duplicates, cfg.Duplicates)
			assert.Equal(t, tc.discard, cfg.Discard)
			assert.Equal(t, tc.maxMsgs, cfg.MaxMsgs, "max_msgs: CCKM_MAX_IN_FLIGHT for the permits")
			assert.Equal(t, 1, cfg.Replicas, "one replica; raise it on a cluster (README)")
			assert.NotEmpty(t, cfg.Description)
		})
	}
}

func TestTheConsumerFilesHoldWhatTheWorkerProvisions(t *testing.T) {
	deployed := deployedWorkerConfig(t, true)
	maxInFlight := deployed.MaxInFlight
	if maxInFlight == 0 {
		maxInFlight = worker.DefaultMaxInFlight
	}
	ackWait := deployed.AckWait
	if ackWait == 0 {
		ackWait = worker.DefaultAckWait
	}
	for _, tc := range []struct {
		consumer      string
		stream        string
		maxAckPending int
		why           string
	}{
		{worker.ConsumerName, worker.RequestStream, 2 * maxInFlight, "max_ack_pending: twice CCKM_MAX_IN_FLIGHT, the requests held"},
		{worker.FollowConsumer, worker.FollowStream, maxInFlight, "max_ack_pending: CCKM_MAX_IN_FLIGHT, the follows in progress"},
		{worker.InFlightConsumer, worker.InFlightStream, -1, "max_ack_pending: none, the stream holds the bound"},
	} {
		t.Run(tc.consumer, func(t *testing.T) {
			assert.Equal(t, tc.stream, consumerFiles[tc.consumer].stream)
			cfg := loadConsumerFile(t, tc.consumer)
			assert.Equal(t, tc.consumer, cfg.Durable)
			assert.Equal(t, jetstream.AckExplicitPolicy, cfg.AckPolicy)
			assert.Equal(t, ackWait, cfg.AckWait, "ack_wait against WORKER_ACK_WAIT")
			assert.Equal(t, -1, cfg.MaxDeliver, "the worker counts deliveries itself")
			assert.Equal(t, tc.maxAckPending, cfg.MaxAckPending, tc.why)
			assert.Equal(t, jetstream.DeliverAllPolicy, cfg.DeliverPolicy)
			assert.Empty(t, cfg.FilterSubject, "the consumer reads every subject of its stream")
			assert.Empty(t, cfg.FilterSubjects, "the consumer reads every subject of its stream")
			assert.Empty(t, cfg.BackOff, "the worker chooses redelivery delays (NakWithDelay)")
			assert.Equal(t, 0, cfg.Replicas, "as its stream")
			assert.NotEmpty(t, cfg.Description)
		})
	}
}

// assets are the server's view of the streams and the consumers.
type assets struct {
	streams   map[string]jetstream.StreamConfig
	consumers map[string]jetstream.ConsumerConfig
}

// readAssets fetches the configurations the server holds of every stream
// and consumer that deploy/nats defines, without the metadata the server
// adds (_nats.*).
func readAssets(t *testing.T, js jetstream.JetStream) assets {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := assets{streams: map[string]jetstream.StreamConfig{}, consumers: map[string]jetstream.ConsumerConfig{}}
	for name := range streamFiles {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err, "stream %s", name)
		cfg := s.CachedInfo().Config
		cfg.Metadata = withoutServerMetadata(cfg.Metadata)
		a.streams[name] = cfg
	}
	for name, cf := range consumerFiles {
		c, err := js.Consumer(ctx, cf.stream, name)
		require.NoError(t, err, "consumer %s on %s", name, cf.stream)
		cfg := c.CachedInfo().Config
		cfg.Metadata = withoutServerMetadata(cfg.Metadata)
		a.consumers[name] = cfg
	}
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
	for name, cf := range consumerFiles {
		_, err := js.CreateConsumer(ctx, cf.stream, loadConsumerFile(t, name))
		require.NoError(t, err, "the server refuses %s", cf.file)
	}
}

// provisionedByWorker runs a worker with provisioning on, with the
// ConfigMap's settings, against a server of its own, and returns that
// server's JetStream once the worker has made everything it makes at the
// start: the request consumer before it is ready, the follow streams and
// consumer afterwards, in the background (runFollow).
func provisionedByWorker(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns := natstest.RunServer(t, nil)
	w := runWorker(t, deployedWorkerConfig(t, true), ns)
	require.Eventually(t, func() bool { return w.Ready() == nil }, 10*time.Second, 20*time.Millisecond,
		"the worker provisions and binds")
	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.Consumer(ctx, worker.FollowStream, worker.FollowConsumer)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the worker provisions the follow consumer %s", worker.FollowConsumer)
	return js
}

// The server accepts the files, and what it makes of them is what it makes
// of the worker's own provisioning, field for field.
func TestTheServerMakesTheSameAssetsFromTheFilesAsFromTheWorker(t *testing.T) {
	provisioned := readAssets(t, provisionedByWorker(t))

	byFiles := natstest.RunServer(t, nil)
	jsFiles, err := jetstream.New(natstest.Connect(t, byFiles))
	require.NoError(t, err)
	createFromFiles(t, jsFiles)
	fromFiles := readAssets(t, jsFiles)

	for name := range streamFiles {
		assert.Equal(t, provisioned.streams[name], fromFiles.streams[name], "stream %s", name)
	}
	for name := range consumerFiles {
		assert.Equal(t, provisioned.consumers[name], fromFiles.consumers[name], "consumer %s", name)
	}
}

// Whatever stream or consumer the worker provisions has its file: a new
// asset of the worker without one fails here, not in a deployment with
// WORKER_PROVISION=false.
func TestDeployNatsHasAFileForEveryAssetTheWorkerProvisions(t *testing.T) {
	js := provisionedByWorker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	streams := js.StreamNames(ctx)
	var names []string
	for name := range streams.Name() {
		names = append(names, name)
	}
	require.NoError(t, streams.Err())
	require.NotEmpty(t, names)
	for _, name := range names {
		assert.Contains(t, streamFiles, name, "the worker provisions stream %s, which deploy/nats lacks", name)
		s, err := js.Stream(ctx, name)
		require.NoError(t, err, "stream %s", name)
		consumers := s.ConsumerNames(ctx)
		for consumer := range consumers.Name() {
			cf, ok := consumerFiles[consumer]
			if assert.True(t, ok, "the worker provisions consumer %s on %s, which deploy/nats lacks", consumer, name) {
				assert.Equal(t, name, cf.stream, "consumer %s: the stream its file is added to", consumer)
			}
		}
		require.NoError(t, consumers.Err(), "consumers of %s", name)
	}
}

// With WORKER_PROVISION=false the worker binds to what the files made: it
// becomes ready on the request consumer and pulls from the follow consumer.
func TestAWorkerThatDoesNotProvisionBindsToTheFilesAssets(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	createFromFiles(t, js)
	w := runWorker(t, deployedWorkerConfig(t, false), ns)
	require.Eventually(t, func() bool { return w.Ready() == nil }, 10*time.Second, 20*time.Millisecond,
		"the worker binds to the consumer made from consumer.json")
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, worker.FollowStream, worker.FollowConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumWaiting > 0
	}, 10*time.Second, 20*time.Millisecond, "the worker pulls from the consumer made from consumer-follow.json")
}

// Without the follow files, a worker that does not provision still takes
// requests (deploy/README.md): following waits in the background.
func TestAWorkerThatDoesNotProvisionIsReadyWithoutTheFollowAssets(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	js, err := jetstream.New(natstest.Connect(t, ns))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{worker.RequestStream, worker.ResultStream, worker.DeadLetterStream} {
		_, err := js.CreateStream(ctx, loadStreamFile(t, name))
		require.NoError(t, err, "the server refuses %s", streamFiles[name])
	}
	_, err = js.CreateConsumer(ctx, worker.RequestStream, loadConsumerFile(t, worker.ConsumerName))
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, loadStreamFile(t, worker.InFlightStream))
	require.NoError(t, err)
	_, err = js.CreateConsumer(ctx, worker.InFlightStream, loadConsumerFile(t, worker.InFlightConsumer))
	require.NoError(t, err)
	w := runWorker(t, deployedWorkerConfig(t, false), ns)
	require.Eventually(t, func() bool { return w.Ready() == nil }, 10*time.Second, 20*time.Millisecond,
		"the worker takes requests without the follow assets")
	_, err = js.Stream(ctx, worker.FollowStream)
	assert.ErrorIs(t, err, jetstream.ErrStreamNotFound, "a worker that does not provision creates nothing")
	// Following starts in the background after readiness: give it time.
	assert.Never(t, func() bool {
		_, err := js.Stream(ctx, worker.FollowStream)
		return err == nil
	}, time.Second, 50*time.Millisecond, "nor later")
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
