package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// modeFloor is the -modes entry of the floor: the least that a correct
// at-least-once JetStream worker does, in a process of its own as the
// worker binary is. For each request it takes from the worker's durable
// consumer on CCKM_CANCEL, it makes the worker's cancel call (the same
// client settings), publishes the result (with its CloudEvents headers)
// through JetStream with a Nats-Msg-Id and waits for the stream's acknowledgement, then acks the
// request. No metrics, no logs, no retries of its own, no follow, no
// keep-alive. What the worker costs beyond it is the price of its
// features; what the floor costs beyond the limit is the price of
// JetStream at least once.
const modeFloor = "floor"

// floorEnv, when set, makes this program the floor instead of a benchmark.
// It reads the worker's variables: NATS_URL, CCKM_URL, WORKER_CONCURRENCY,
// HTTP_ADDR (for /readyz) and HTTP_PPROF.
const floorEnv = "CCKM_BENCH_FLOOR"

// The worker's pull settings (worker/jetstream.go), so that the floor pulls
// as it does: a 5 s expiry and a 500 ms heartbeat bound the client's
// occasional pause in asking for more.
const (
	floorPullExpiry    = 5 * time.Second
	floorPullHeartbeat = 500 * time.Millisecond
)

// floorPublishTimeout bounds the wait for a result's acknowledgement, as
// the worker's publish timeout does.
const floorPublishTimeout = 10 * time.Second

// The worker binary's garbage-collection settings (cmd/cckm-cancel-worker),
// applied unless GOGC or GOMEMLIMIT say otherwise: the floor should not
// spend more on collection than the worker it is compared with.
const (
	floorGCPercent   = 200
	floorMemoryLimit = 40 << 20
)

// floorConfig is what the floor reads from its environment.
type floorConfig struct {
	natsURL, cmURL string
	concurrency    int
	addr           string // HTTP_ADDR: /readyz, and pprof with HTTP_PPROF
	pprof          bool
}

func floorConfigFromEnv(getenv func(string) string) (floorConfig, error) {
	cfg := floorConfig{
		natsURL: getenv("NATS_URL"),
		cmURL:   getenv("CCKM_URL"),
		addr:    getenv("HTTP_ADDR"),
		pprof:   getenv("HTTP_PPROF") == "true",
	}
	var err error
	if cfg.concurrency, err = strconv.Atoi(getenv("WORKER_CONCURRENCY")); err != nil || cfg.concurrency <= 0 {
		return cfg, fmt.Errorf("WORKER_CONCURRENCY %q: not a positive number", getenv("WORKER_CONCURRENCY"))
	}
	if cfg.natsURL == "" || cfg.cmURL == "" || cfg.addr == "" {
		return cfg, errors.New("NATS_URL, CCKM_URL and HTTP_ADDR must be set")
	}
	return cfg, nil
}

// floorChild is the program when floorEnv is set: it runs the floor until
// SIGTERM or SIGINT, then finishes the requests it holds.
func floorChild() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(floorGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(floorMemoryLimit)
	}
	cfg, err := floorConfigFromEnv(os.Getenv)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runFloor(ctx, cfg); err != nil {
		fail(fmt.Errorf("floor: %w", err))
	}
}

// startFloor runs this program as the floor against the benchmark's NATS
// and CM and waits until it consumes. The stream and the consumer must
// exist: the worker made them (provision).
func startFloor(natsURL, cmURL string, concurrency int) (*workerProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startProcess(modeFloor, self, []string{floorEnv + "=1"}, natsURL, cmURL, concurrency)
}

// floor is the running floor.
type floor struct {
	js     jetstream.JetStream
	client *cckmclient.Client
	slots  chan struct{} // a slot per CipherTrust Manager call in flight
	// idle hands a message to a goroutine that has finished its last one
	// (a fresh goroutine per request grows its stack again each time: 5%
	// of the worker's CPU, which reuses them too).
	idle     chan jetstream.Msg
	inFlight sync.WaitGroup
}

// runFloor consumes until ctx ends, then drains: the messages already
// pulled are handled, their results published and the requests acked.
func runFloor(ctx context.Context, cfg floorConfig) error {
	client, err := newClient(cfg.cmURL, cfg.concurrency)
	if err != nil {
		return err
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(cfg.natsURL, nats.Name("cckm-bench floor"),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(floorPublishTimeout))
	if err != nil {
		return err
	}
	setupCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := js.Consumer(setupCtx, worker.RequestStream, worker.ConsumerName)
	cancel()
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", worker.ConsumerName, worker.RequestStream, err)
	}

	f := &floor{js: js, client: client, slots: make(chan struct{}, cfg.concurrency), idle: make(chan jetstream.Msg)}
	cc, err := cons.Consume(f.take,
		jetstream.PullMaxMessages(cfg.concurrency),
		jetstream.PullExpiry(floorPullExpiry),
		jetstream.PullHeartbeat(floorPullHeartbeat))
	if err != nil {
		return err
	}
	var ready atomic.Bool
	ready.Store(true)
	srv, err := serveFloorHTTP(cfg, &ready)
	if err != nil {
		cc.Stop()
		return err
	}
	defer srv.Close()

	<-ctx.Done()
	ready.Store(false)
	cc.Drain() // hands the messages already pulled to take, then closes
	<-cc.Closed()
	f.inFlight.Wait()
	close(f.idle)
	if err := nc.Drain(); err != nil { // flushes the last acks
		return err
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
	}
	return nil
}

// take is Consume's callback: it waits for a slot, then hands msg to an
// idle goroutine or to a new one.
func (f *floor) take(msg jetstream.Msg) {
	f.slots <- struct{}{}
	f.inFlight.Add(1)
	select {
	case f.idle <- msg:
	default:
		go f.loop(msg)
	}
}

func (f *floor) loop(msg jetstream.Msg) {
	for ok := true; ok; msg, ok = <-f.idle {
		f.handle(msg)
		f.inFlight.Done()
	}
}

// handle answers one request: the call, the result stored, the ack. Its
// slot is freed when the call ends, as the worker frees it.
func (f *floor) handle(msg jetstream.Msg) {
	received := time.Now()
	kind, ok := messages.KindOfSubject(msg.Subject())
	if !ok {
		<-f.slots
		_ = msg.Term()
		return
	}
	// A stable request_id for a bare id, as a correct at-least-once worker
	// needs one: a redelivery must publish under the same Nats-Msg-Id.
	stableID := ""
	if meta, err := msg.Metadata(); err == nil {
		stableID = messages.DerivedRequestID(meta.Stream, meta.Sequence.Stream, meta.Timestamp)
	}
	req, err := messages.ParseRequest(kind, msg.Data(), messages.Header(msg.Headers()), stableID)
	result := messages.Result{RequestID: req.RequestID, Kind: kind, ID: req.ID, ReceivedAt: messages.NewTimestamp(received)}
	if err != nil {
		<-f.slots
		result.Status = messages.StatusRejected
		result.Error = &messages.Error{Code: messages.CodeInvalidRequest, Message: err.Error()}
	} else {
		resp, err := f.client.Cancel(context.Background(), kind, req.ID)
		<-f.slots
		result.HTTPStatus, result.Attempts = resp.HTTPStatus, resp.Attempts
		if resp.Job != nil {
			result.Job, result.Abort, result.OverallStatus = resp.Job.Raw, resp.Job.Abort, resp.Job.OverallStatus
		}
		switch {
		case err == nil && result.Abort:
			result.Status = messages.StatusCanceled
		case err == nil:
			result.Status = messages.StatusFailed
			result.Error = &messages.Error{Code: messages.CodeAbortNotSet, Message: "abort is not true"}
		default:
			result.Status = messages.StatusFailed
			// The floor classifies nothing: every failure is one code.
			result.Error = &messages.Error{Code: messages.CodeServerError, Message: err.Error()}
		}
	}
	result.CompletedAt = messages.NewTimestamp(time.Now())

	out := nats.NewMsg(kind.ResultSubject())
	out.Data = result.AppendJSON(make([]byte, 0, 512+len(result.Job)))
	out.Header.Set(messages.HeaderMsgID, messages.ResultMsgID(result.RequestID))
	// Every result is a CloudEvent (ce-* headers), for the floor as for the
	// worker: a worker without them would not be correct.
	messages.SetCloudEvent(out.Header, &result, out.Header.Get(messages.HeaderMsgID), "")
	ack, err := f.js.PublishMsgAsync(out)
	if err == nil {
		select {
		case <-ack.Ok():
		case err = <-ack.Err():
		}
	}
	if err != nil {
		_ = msg.Nak() // at least once: the result is not stored, so the request stays
		return
	}
	_ = msg.Ack()
}

// serveFloorHTTP serves /readyz (200 while consuming) on cfg.addr, and the
// pprof endpoints the worker serves with HTTP_PPROF, so that -worker-cpuprofile
// and -trace cover the floor too.
func serveFloorHTTP(cfg floorConfig, ready *atomic.Bool) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	if cfg.pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

// provision lets a worker binary create the streams and the consumer, then
// stops it: the floor binds to what the worker made, so both pull from the
// same setup.
func provision(bin, natsURL, cmURL string, concurrency int) error {
	proc, err := startWorker(bin, natsURL, cmURL, string(worker.ModeJetStream), concurrency)
	if err != nil {
		return err
	}
	proc.stop()
	return nil
}
