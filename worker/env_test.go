package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/internal/syncbuf"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// testEnv is an embedded NATS server, a fake CipherTrust Manager, and a
// client of each for the test to publish and look with.
type testEnv struct {
	ns *server.Server
	nc *nats.Conn
	js jetstream.JetStream
	cm *cckmtest.Server
}

const (
	testUser     = "worker"
	testPassword = "worker-password"
)

func newTestEnv(t *testing.T, cmOpts cckmtest.Options) *testEnv {
	t.Helper()
	ns := natstest.RunServer(t, nil)
	return newTestEnvOn(t, ns, cmOpts)
}

func newTestEnvOn(t *testing.T, ns *server.Server, cmOpts cckmtest.Options) *testEnv {
	t.Helper()
	cmOpts.Username, cmOpts.Password = testUser, testPassword
	cm := cckmtest.NewServer(cmOpts)
	t.Cleanup(cm.Close)
	nc := natstest.Connect(t, ns, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return &testEnv{ns: ns, nc: nc, js: js, cm: cm}
}

// clientConfig is the configuration of a CipherTrust Manager client of
// env with fast retries.
func (e *testEnv) clientConfig() cckmclient.Config {
	return cckmclient.Config{
		BaseURL:     e.cm.URL(),
		Credentials: cckmclient.Credentials{Username: testUser, Password: testPassword},
		Timeout:     2 * time.Second,
		MaxAttempts: 2,
		RetryBudget: 5 * time.Second,
		BaseBackoff: time.Millisecond,
		MaxBackoff:  5 * time.Millisecond,
	}
}

// client returns a CipherTrust Manager client with fast retries.
func (e *testEnv) client(t *testing.T, onAttempt func(cckmclient.Attempt)) *cckmclient.Client {
	t.Helper()
	cfg := e.clientConfig()
	cfg.OnAttempt = onAttempt
	client, err := cckmclient.New(cfg)
	require.NoError(t, err)
	return client
}

// testConfig is a worker configuration with short delays.
func testConfig(mode Mode) Config {
	return Config{
		Mode:            mode,
		Concurrency:     8,
		Provision:       true,
		AckWait:         2 * time.Second,
		MaxDeliveries:   2,
		RetryDelay:      20 * time.Millisecond,
		MaxRetryDelay:   100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
	}
}

// runningWorker is a Worker running in a goroutine the test owns.
type runningWorker struct {
	*Worker
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
}

// startWorker runs a worker on its own NATS connection until the test
// ends or stop is called, and waits until it is ready.
func (e *testEnv) startWorker(t *testing.T, cfg Config, canceler Canceler) *runningWorker {
	t.Helper()
	return e.startWorkerWith(t, cfg, canceler)
}

// startWorkerWith is startWorker on a connection made with opts.
func (e *testEnv) startWorkerWith(t *testing.T, cfg Config, canceler Canceler, opts ...nats.Option) *runningWorker {
	t.Helper()
	return e.runWorker(t, cfg, canceler, nil, opts...)
}

// runWorker starts a worker recording into metrics (nil: none) on a
// connection made with opts, and waits until it is ready.
func (e *testEnv) runWorker(t *testing.T, cfg Config, canceler Canceler, metrics *Metrics, opts ...nats.Option) *runningWorker {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc := natstest.Connect(t, e.ns, opts...)
	logs := &syncBuffer{}
	w, err := New(cfg, nc, canceler, zerolog.New(logs), metrics)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWorker{Worker: w, nc: nc, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { rw.done <- w.Run(ctx) }()
	t.Cleanup(func() { rw.stop(t) })
	require.Eventually(t, func() bool { return w.Ready() == nil }, 10*time.Second, 5*time.Millisecond, "worker not ready")
	return rw
}

// stop stops the worker and waits for Run to return.
func (rw *runningWorker) stop(t *testing.T) {
	t.Helper()
	rw.cancel()
	select {
	case err := <-rw.done:
		require.NoError(t, err)
		rw.done <- nil // later calls return at once
	case <-time.After(15 * time.Second):
		t.Fatal("worker did not stop in 15s")
	}
}

// resultWatch collects results published on core NATS.
type resultWatch struct {
	sub *nats.Subscription
}

func (e *testEnv) watchResults(t *testing.T, subject string) *resultWatch {
	t.Helper()
	sub, err := e.nc.SubscribeSync(subject)
	require.NoError(t, err)
	require.NoError(t, sub.SetPendingLimits(-1, -1))
	require.NoError(t, e.nc.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &resultWatch{sub: sub}
}

// next waits for the next result message.
func (r *resultWatch) next(t *testing.T) (messages.Result, *nats.Msg) {
	t.Helper()
	msg, err := r.sub.NextMsg(10 * time.Second)
	require.NoError(t, err, "no result within 10s")
	var result messages.Result
	require.NoError(t, json.Unmarshal(msg.Data, &result), string(msg.Data))
	return result, msg
}

// publish stores a request in CCKM_CANCEL and waits for the stream's ack.
func (e *testEnv) publish(t *testing.T, kind messages.Kind, payload string, header nats.Header) {
	t.Helper()
	msg := &nats.Msg{Subject: kind.RequestSubject(), Data: []byte(payload), Header: header}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := e.js.PublishMsg(ctx, msg)
	require.NoError(t, err)
}

// storedResults reads every message of CCKM_CANCEL_RESULTS.
func (e *testEnv) storedResults(t *testing.T) []messages.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.js.Stream(ctx, ResultStream)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	total := int(info.State.Msgs)
	if total == 0 {
		return nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	batch, err := cons.Fetch(total, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var results []messages.Result
	for msg := range batch.Messages() {
		var r messages.Result
		require.NoError(t, json.Unmarshal(msg.Data(), &r))
		results = append(results, r)
	}
	require.NoError(t, batch.Error())
	require.Len(t, results, total)
	return results
}

// syncBuffer captures output written from several goroutines.
type syncBuffer = syncbuf.Buffer
