package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/internal/telemetry"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// inProcessSuffix on a mode (-modes jetstream-inproc) runs the worker's
// code inside this process instead of the worker binary: same worker
// package, client settings and info log to a file, but no process to
// cross and one Go runtime shared with the NATS server and the fake CM,
// as the limit's client shares it. It says how much of the gap to the
// limit is the worker being a process of its own. Its CPU counts in the
// rest and its RSS cannot be told apart; the targets are for the
// binary.
const inProcessSuffix = "-inproc"

// inProcessWorker is the worker's code running in this process.
type inProcessWorker struct {
	cancel  context.CancelFunc
	done    chan error
	nc      *nats.Conn
	client  *cckmclient.Client
	closed  chan struct{} // closed when nc is
	logFile *os.File
	logBuf  *bufio.Writer
	tracing *telemetry.Tracing
}

func startInProcessWorker(natsURL, cmURL string, mode worker.Mode, concurrency int) (*inProcessWorker, error) {
	logFile, err := os.CreateTemp("", "cckm-bench-inproc-*.log")
	if err != nil {
		return nil, err
	}
	logBuf := bufio.NewWriterSize(logFile, 64<<10)
	log := zerolog.New(zerolog.SyncWriter(logBuf)).Level(zerolog.InfoLevel).With().Timestamp().
		Str("service", "cckm-cancel-worker").Logger()
	p := &inProcessWorker{done: make(chan error, 1), logFile: logFile, logBuf: logBuf}
	tracing, provider, err := inProcessTracing()
	if err != nil {
		p.closeLog()
		return nil, err
	}
	p.tracing = tracing
	client, err := newTracedClient(cmURL, concurrency, provider)
	if err != nil {
		p.closeLog()
		return nil, err
	}
	p.client = client
	p.closed = make(chan struct{})
	if p.nc, err = nats.Connect(natsURL, nats.Name("cckm-cancel-worker (in process)"),
		nats.ClosedHandler(func(*nats.Conn) { close(p.closed) })); err != nil {
		p.closeLog()
		return nil, err
	}
	w, err := worker.New(worker.Config{Mode: mode, Concurrency: concurrency, Provision: true, TracerProvider: provider},
		p.nc, client, log, worker.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		p.nc.Close()
		p.closeLog()
		return nil, err
	}
	var ctx context.Context
	ctx, p.cancel = context.WithCancel(context.Background())
	go func() { p.done <- w.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for w.Ready() != nil {
		if time.Now().After(deadline) {
			err := w.Ready()
			p.stop()
			return nil, fmt.Errorf("in-process worker not ready in 30s: %w", err)
		}
		select {
		case err := <-p.done:
			p.done <- err
			p.stop()
			return nil, fmt.Errorf("in-process worker stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p, nil
}

// stop drains the worker as SIGTERM would the binary, and waits for the
// connection's drain to flush the last results and acks, so that they do
// not land in the next measurement.
func (p *inProcessWorker) stop() {
	p.cancel()
	<-p.done
	if err := p.nc.Drain(); err != nil {
		p.nc.Close()
	}
	select {
	case <-p.closed:
	case <-time.After(30 * time.Second):
		p.nc.Close()
	}
	p.client.CloseIdleConnections() // else they stay open beside the next runs
	p.closeLog()
}

func (p *inProcessWorker) closeLog() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.tracing.Shutdown(ctx) // the last spans, as the binary exports them at exit
	_ = p.logBuf.Flush()
	_ = p.logFile.Close()
	_ = os.Remove(p.logFile.Name())
}

// splitMode returns the worker mode of a -modes entry and whether it runs
// in this process.
func splitMode(mode string) (worker.Mode, bool) {
	base, inProcess := strings.CutSuffix(mode, inProcessSuffix)
	return worker.Mode(base), inProcess
}
