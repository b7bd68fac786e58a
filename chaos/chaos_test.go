package chaos

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

const (
	chaosUser     = "chaos"
	chaosPassword = "chaos-password"
)

// workerEnv is the worker's environment for a chaos run: short ack wait and
// redelivery delays so that recovery shows within the test.
func workerEnv(natsURL, cmURL string) map[string]string {
	return map[string]string{
		"NATS_URL":               natsURL,
		"CCKM_URL":               cmURL,
		"CCKM_USERNAME":          chaosUser,
		"CCKM_PASSWORD":          chaosPassword,
		"WORKER_CONCURRENCY":     "64",
		"WORKER_ACK_WAIT":        "3s",
		"WORKER_RETRY_DELAY":     "100ms",
		"WORKER_MAX_RETRY_DELAY": "1s",
		"CCKM_TIMEOUT":           "5s",
	}
}

func newCM(t *testing.T, opts cckmtest.Options) *cckmtest.Server {
	t.Helper()
	opts.Username, opts.Password, opts.AnyJob, opts.NoRecord = chaosUser, chaosPassword, true, true
	cm := cckmtest.NewServer(opts)
	t.Cleanup(cm.Close)
	return cm
}

func connect(t *testing.T, urls string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func TestKillDash9MidLoadThenRestart(t *testing.T) {
	requireChaos(t)
	ns := natstest.RunServer(t, nil)
	cm := newCM(t, cckmtest.Options{Latency: 20 * time.Millisecond})
	env := workerEnv(ns.ClientURL(), cm.URL())
	worker := startWorker(t, env)
	js := connect(t, ns.ClientURL())

	l := startLoad(t, js, 3000, 6*time.Second)
	require.Eventually(t, func() bool { return l.sentCount() >= 1000 }, time.Minute, 10*time.Millisecond)
	worker.kill(t)
	startWorker(t, env)
	tl := checkResults(t, js, l.wait(t))
	assert.Equal(t, tl.sent, tl.statuses[messages.StatusCanceled])
}

func TestNATSServerRestartMidLoad(t *testing.T) {
	requireChaos(t)
	opts := natstest.Options(t)
	first := natstest.RunServer(t, opts)
	opts.Port = first.Addr().(*net.TCPAddr).Port
	cm := newCM(t, cckmtest.Options{Latency: 10 * time.Millisecond})
	startWorker(t, workerEnv(first.ClientURL(), cm.URL()))
	js := connect(t, first.ClientURL())

	l := startLoad(t, js, 3000, 6*time.Second)
	require.Eventually(t, func() bool { return l.sentCount() >= 1000 }, time.Minute, 10*time.Millisecond)
	first.Shutdown()
	first.WaitForShutdown()
	natstest.RunServer(t, opts)
	tl := checkResults(t, js, l.wait(t))
	assert.Equal(t, tl.sent, tl.statuses[messages.StatusCanceled])
}

func TestAClusterNodeLostMidLoadWithR3Streams(t *testing.T) {
	requireChaos(t)
	nodes := startCluster(t, 3)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.ClientURL())
	}
	natsURL := strings.Join(urls, ",")
	js := connect(t, natsURL)
	createR3Streams(t, js)

	cm := newCM(t, cckmtest.Options{Latency: 10 * time.Millisecond})
	env := workerEnv(natsURL, cm.URL())
	env["WORKER_PROVISION"] = "false"
	startWorker(t, env)

	l := startLoad(t, js, 3000, 6*time.Second)
	require.Eventually(t, func() bool { return l.sentCount() >= 1000 }, time.Minute, 10*time.Millisecond)
	// Lose the node that leads the request stream.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "CCKM_CANCEL")
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.NotNil(t, info.Cluster)
	var lost *server.Server
	for _, n := range nodes {
		if n.Name() == info.Cluster.Leader {
			lost = n
		}
	}
	require.NotNil(t, lost, "leader %q among the nodes", info.Cluster.Leader)
	t.Logf("shutting down %s, the leader of CCKM_CANCEL", lost.Name())
	lost.Shutdown()
	lost.WaitForShutdown()

	tl := checkResults(t, js, l.wait(t))
	assert.Equal(t, tl.sent, tl.statuses[messages.StatusCanceled])
}

func TestCMAnswering503On30PercentAndStalling2sOn5Percent(t *testing.T) {
	requireChaos(t)
	ns := natstest.RunServer(t, nil)
	cm := newCM(t, cckmtest.Options{Fault: func(call cckmtest.Call) *cckmtest.Step {
		switch p := rand.Float64(); {
		case p < 0.30:
			return &cckmtest.Step{Status: 503}
		case p < 0.35:
			return &cckmtest.Step{Delay: 2 * time.Second}
		}
		return nil
	}})
	env := workerEnv(ns.ClientURL(), cm.URL())
	env["WORKER_MAX_DELIVERIES"] = "10"
	startWorker(t, env)
	js := connect(t, ns.ClientURL())

	tl := checkResults(t, js, startLoad(t, js, 2000, 5*time.Second).wait(t))
	assert.Equal(t, tl.sent, tl.statuses[messages.StatusCanceled], "every request ends canceled despite the faults")
}

func TestAJWTExpiringEvery2Seconds(t *testing.T) {
	requireChaos(t)
	ns := natstest.RunServer(t, nil)
	cm := newCM(t, cckmtest.Options{TokenLifetime: 2 * time.Second, Latency: 5 * time.Millisecond})
	startWorker(t, workerEnv(ns.ClientURL(), cm.URL()))
	js := connect(t, ns.ClientURL())

	tl := checkResults(t, js, startLoad(t, js, 3000, 10*time.Second).wait(t))
	assert.Equal(t, tl.sent, tl.statuses[messages.StatusCanceled], "no request fails for an expired token")
	grants := cm.Grants()
	t.Logf("token grants: %v", grants)
	assert.Equal(t, 1, grants["password"], "one login; renewals use the refresh token")
	assert.GreaterOrEqual(t, grants["refresh_token"], 4, "the token was renewed as it expired")
}

// startCluster runs n JetStream servers clustered over loopback.
func startCluster(t *testing.T, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ports[i] = l.Addr().(*net.TCPAddr).Port
		require.NoError(t, l.Close())
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
	}
	var nodes []*server.Server
	for i := range n {
		opts := natstest.Options(t)
		opts.ServerName = "n" + strconv.Itoa(i+1)
		opts.Cluster = server.ClusterOpts{Name: "chaos", Host: "127.0.0.1", Port: ports[i]}
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		nodes = append(nodes, natstest.RunServer(t, opts))
	}
	js := connect(t, nodes[0].ClientURL())
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "JetStream cluster ready")
	return nodes
}

// createR3Streams creates the worker's streams and consumer with three
// replicas, as an operator would (the worker then runs with provisioning
// off).
func createR3Streams(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var requests, dead []string
	for _, kind := range messages.Kinds {
		requests = append(requests, kind.RequestSubject())
		dead = append(dead, kind.DeadLetterSubject())
	}
	configs := []jetstream.StreamConfig{
		{Name: "CCKM_CANCEL", Subjects: requests,
			Retention: jetstream.WorkQueuePolicy, Replicas: 3, Duplicates: 2 * time.Minute},
		{Name: "CCKM_CANCEL_RESULTS", Subjects: []string{messages.SubjectResults},
			Replicas: 3, Duplicates: 10 * time.Minute, MaxAge: time.Hour},
		{Name: "CCKM_CANCEL_DEAD", Subjects: dead,
			Replicas: 3},
		// The permits of CCKM_MAX_IN_FLIGHT's default, 256; the worker
		// fills the stream.
		{Name: "CCKM_CANCEL_INFLIGHT", Subjects: []string{"cckm.cancel.inflight.permit"},
			Replicas: 3, MaxMsgs: 256, Discard: jetstream.DiscardNew},
	}
	for _, cfg := range configs {
		_, err := js.CreateStream(ctx, cfg)
		require.NoError(t, err, cfg.Name)
	}
	_, err := js.CreateConsumer(ctx, "CCKM_CANCEL", jetstream.ConsumerConfig{
		Durable: "cckm-cancel-worker", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 3 * time.Second,
		MaxDeliver: -1, MaxAckPending: 512, // twice CCKM_MAX_IN_FLIGHT's default, 256
	})
	require.NoError(t, err)
	_, err = js.CreateConsumer(ctx, "CCKM_CANCEL_INFLIGHT", jetstream.ConsumerConfig{
		Durable: "cckm-cancel-inflight", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 3 * time.Second,
		MaxDeliver: -1, MaxAckPending: -1,
	})
	require.NoError(t, err)
}
