package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

const (
	benchUser     = "bench"
	benchPassword = "bench-password"
)

// limitName is the name of the limit's rows.
const limitName = "limit"

const tableHeader = "| run | throughput (req/s) | ratio to limit | ratio to floor | p50 | p99 | p50 low load | p99 low load | added p50 low load | low load p50 in / worker / out | worker peak RSS | CPU µs/req worker + rest |\n" +
	"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"

// row is one line of the table.
type row struct {
	name           string
	throughput     float64
	p50, p99       time.Duration
	lowP50, lowP99 time.Duration
	addedP50       time.Duration
	lowLegs        legs    // medians at low load; zero for the limit
	ratio          float64 // throughput over the same round's limit
	// ratioFloor is the throughput over the same round's floor; zero for
	// the limit and when the floor is not measured.
	ratioFloor       float64
	rss              int64
	errors, failures int
	// CPU per request in the throughput run: the worker process, and the
	// benchmark process (NATS server, fake CM, load driver; for the limit,
	// the client too).
	workerCPU, restCPU time.Duration
}

func (r row) print() {
	rss, added, split, toFloor := "—", "—", "—", "—"
	if r.ratioFloor > 0 {
		toFloor = fmt.Sprintf("%.3f", r.ratioFloor)
	}
	if r.rss > 0 {
		rss = fmt.Sprintf("%.1f MiB", float64(r.rss)/(1<<20))
	}
	if !strings.Contains(r.name, limitName) {
		added = ms(r.addedP50)
		split = fmt.Sprintf("%s / %s / %s", ms(r.lowLegs.in), ms(r.lowLegs.worker), ms(r.lowLegs.out))
	}
	fmt.Printf("| %s | %.0f | %.3f | %s | %s | %s | %s | %s | %s | %s | %s | %.0f + %.0f |\n", r.name, r.throughput,
		r.ratio, toFloor, ms(r.p50), ms(r.p99), ms(r.lowP50), ms(r.lowP99), added, split, rss,
		float64(r.workerCPU)/float64(time.Microsecond), float64(r.restCPU)/float64(time.Microsecond))
	if r.failures > 0 || r.errors > 0 {
		fmt.Printf("|  ↳ %d results not canceled, %d errors | | | | | | | | | | | |\n", r.failures, r.errors)
	}
}

// median is row i of every round, each figure the median of the rounds'.
func median(rounds [][]row, i int) row {
	pick := func(get func(row) float64) float64 {
		values := make([]float64, 0, len(rounds))
		for _, rows := range rounds {
			values = append(values, get(rows[i]))
		}
		slices.Sort(values)
		return values[len(values)/2]
	}
	pickDuration := func(get func(row) time.Duration) time.Duration {
		return time.Duration(pick(func(r row) float64 { return float64(get(r)) }))
	}
	name := strings.SplitN(rounds[0][i].name, " ", 2)[0]
	return row{
		name:       "**" + name + " (median of " + strconv.Itoa(len(rounds)) + ")**",
		throughput: pick(func(r row) float64 { return r.throughput }),
		ratio:      pick(func(r row) float64 { return r.ratio }),
		ratioFloor: pick(func(r row) float64 { return r.ratioFloor }),
		p50:        pickDuration(func(r row) time.Duration { return r.p50 }),
		p99:        pickDuration(func(r row) time.Duration { return r.p99 }),
		lowP50:     pickDuration(func(r row) time.Duration { return r.lowP50 }),
		lowP99:     pickDuration(func(r row) time.Duration { return r.lowP99 }),
		addedP50:   pickDuration(func(r row) time.Duration { return r.addedP50 }),
		lowLegs: legs{
			in:     pickDuration(func(r row) time.Duration { return r.lowLegs.in }),
			worker: pickDuration(func(r row) time.Duration { return r.lowLegs.worker }),
			out:    pickDuration(func(r row) time.Duration { return r.lowLegs.out }),
		},
		rss:       int64(pick(func(r row) float64 { return float64(r.rss) })),
		workerCPU: pickDuration(func(r row) time.Duration { return r.workerCPU }),
		restCPU:   pickDuration(func(r row) time.Duration { return r.restCPU }),
	}
}

// setRatioToFloor sets each mode's ratio to the floor: its throughput over
// the floor's of the same round. rows are one round's.
func setRatioToFloor(rows []row) {
	floor := slices.IndexFunc(rows, func(r row) bool { return r.name == modeFloor })
	if floor < 0 || rows[floor].throughput <= 0 {
		return
	}
	for i := range rows {
		if rows[i].name != limitName {
			rows[i].ratioFloor = rows[i].throughput / rows[floor].throughput
		}
	}
}

// printSummary prints, for every latency and mode, the throughput over the
// limit and over the floor: the median of the rounds with their range.
// all holds each latency's rounds, as runLatency returns them.
func printSummary(latencies []time.Duration, all [][][]row) {
	runs := len(all[0])
	fmt.Printf("\n## Summary: throughput over the limit and over the floor, median of %d round(s)", runs)
	if runs > 1 {
		fmt.Print(" (range)")
	}
	fmt.Print("\n\n| CM latency | run | ratio to limit | ratio to floor |\n|---|---|---:|---:|\n")
	for l, rounds := range all {
		for i, r := range rounds[0] {
			if r.name == limitName || strings.HasPrefix(r.name, limitName+" ") {
				continue
			}
			name := strings.SplitN(r.name, " ", 2)[0]
			fmt.Printf("| %v | %s | %s | %s |\n", latencies[l], name,
				spread(rounds, i, func(r row) float64 { return r.ratio }),
				spread(rounds, i, func(r row) float64 { return r.ratioFloor }))
		}
	}
}

// spread is the median of row i's figure over the rounds, with the range
// when there is more than one round; "—" when the figure is not measured.
func spread(rounds [][]row, i int, get func(row) float64) string {
	values := make([]float64, 0, len(rounds))
	for _, rows := range rounds {
		values = append(values, get(rows[i]))
	}
	slices.Sort(values)
	if values[0] <= 0 {
		return "—"
	}
	out := fmt.Sprintf("%.3f", values[len(values)/2])
	if len(values) > 1 {
		out += fmt.Sprintf(" (%.3f–%.3f)", values[0], values[len(values)-1])
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// newClient is the worker's client with its default settings.
func newClient(url string, concurrency int) (*cckmclient.Client, error) {
	return newTracedClient(url, concurrency, nil)
}

// newTracedClient is newClient traced by provider (nil: not traced).
func newTracedClient(url string, concurrency int, provider oteltrace.TracerProvider) (*cckmclient.Client, error) {
	return cckmclient.New(cckmclient.Config{
		BaseURL:         url,
		Credentials:     cckmclient.Credentials{Username: benchUser, Password: benchPassword},
		MaxConnsPerHost: max(cckmclient.DefaultMaxConnsPerHost, concurrency),
		TracerProvider:  provider,
	})
}

// measureDirect is the limit: n cancels by `concurrency` goroutines sharing
// one client, then lowLoad cancels one at a time.
func measureDirect(url string, concurrency, n, lowLoad int) (row, error) {
	client, err := newClient(url, concurrency)
	if err != nil {
		return row{}, err
	}
	// Its C connections would otherwise stay open for the transport's idle
	// timeout (90 s), with their goroutines in this process, through the
	// next runs.
	defer client.CloseIdleConnections()
	ctx, cancel := measureContext()
	defer cancel()
	if _, err := client.Cancel(ctx, messages.KindRefresh, messages.NewRequestID()); err != nil { // log in first
		return row{}, err
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = messages.NewRequestID()
	}
	latencies := make([]time.Duration, n)
	var next atomic.Int64
	var errs atomic.Int64
	var wg sync.WaitGroup
	start, startCPU := time.Now(), selfCPUTime()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if _, err := client.Cancel(ctx, messages.KindRefresh, ids[i]); err != nil {
					errs.Add(1)
				}
				latencies[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	r := row{name: limitName, throughput: float64(n) / elapsed.Seconds(),
		p50: percentile(latencies, .5), p99: percentile(latencies, .99), errors: int(errs.Load()),
		restCPU: (selfCPUTime() - startCPU) / time.Duration(n)}

	low := make([]time.Duration, 0, lowLoad)
	for range lowLoad {
		t0 := time.Now()
		if _, err := client.Cancel(ctx, messages.KindRefresh, messages.NewRequestID()); err != nil {
			r.errors++
		}
		low = append(low, time.Since(t0))
	}
	slices.Sort(low)
	r.lowP50, r.lowP99 = percentile(low, .5), percentile(low, .99)
	return r, nil
}

// legs splits a request's publish-to-result latency at the times the
// worker wrote in the result (one clock: the worker runs on this machine):
// in, from the publish to received_at (NATS, JetStream, the worker taking
// the message); worker, from received_at to completed_at (parsing and the
// CipherTrust Manager call); out, from completed_at to the result seen
// (publishing, NATS).
type legs struct{ in, worker, out time.Duration }

// medianLegs is the median of each leg.
func medianLegs(all []legs) legs {
	pick := func(get func(legs) time.Duration) time.Duration {
		values := make([]time.Duration, 0, len(all))
		for _, l := range all {
			values = append(values, get(l))
		}
		slices.Sort(values)
		return percentile(values, .5)
	}
	return legs{
		in:     pick(func(l legs) time.Duration { return l.in }),
		worker: pick(func(l legs) time.Duration { return l.worker }),
		out:    pick(func(l legs) time.Duration { return l.out }),
	}
}

// collector matches results to the time their request was published.
type collector struct {
	mu        sync.Mutex
	sent      map[string]time.Time
	latencies []time.Duration
	legs      []legs // of the results whose times parse
	failures  int
	last      time.Time
	want      int
	done      chan struct{}
}

func newCollector(want int) *collector {
	return &collector{sent: make(map[string]time.Time, want), want: want, done: make(chan struct{})}
}

func (c *collector) publishing(requestID string) {
	c.mu.Lock()
	c.sent[requestID] = time.Now()
	c.mu.Unlock()
}

func (c *collector) onResult(msg *nats.Msg) {
	now := time.Now()
	requestID, status := stringField(msg.Data, "request_id"), stringField(msg.Data, "status")
	c.mu.Lock()
	defer c.mu.Unlock()
	sentAt, ok := c.sent[requestID]
	if !ok {
		return // not ours, or a duplicate
	}
	received, err1 := time.Parse(time.RFC3339Nano, stringField(msg.Data, "received_at"))
	completed, err2 := time.Parse(time.RFC3339Nano, stringField(msg.Data, "completed_at"))
	if err1 == nil && err2 == nil {
		c.legs = append(c.legs, legs{in: received.Sub(sentAt), worker: completed.Sub(received), out: now.Sub(completed)})
	}
	delete(c.sent, requestID)
	c.latencies = append(c.latencies, now.Sub(sentAt))
	if messages.Status(status) != messages.StatusCanceled {
		c.failures++
	}
	c.last = now
	if len(c.latencies) == c.want {
		close(c.done)
	}
}

// stringField returns the value of the first "name":"..." in a result as
// the worker writes it (no space after the colon; the benchmark's request
// ids and the statuses hold no escapes). The load driver shares the CPUs
// with the worker, so it reads results this way rather than with
// encoding/json; TestStringFieldReadsWhatTheWorkerWrites checks it.
func stringField(data []byte, name string) string {
	key := `"` + name + `":"`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return ""
	}
	value := data[i+len(key):]
	end := bytes.IndexByte(value, '"')
	if end < 0 {
		return ""
	}
	return string(value[:end])
}

// printTimeline prints to stderr, every 250 ms until the returned stop is
// called, the results so far and the worker's CPU time: a stall shows as
// a row with few results.
func (c *collector) printTimeline(start time.Time, workerCPU func() time.Duration) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		last := 0
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				c.mu.Lock()
				n := len(c.latencies)
				c.mu.Unlock()
				fmt.Fprintf(os.Stderr, "%6.2fs %7d results (+%5d), worker CPU %v\n",
					time.Since(start).Seconds(), n, n-last, workerCPU().Round(time.Millisecond))
				last = n
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// stallLimit is how long wait waits for the next result before it says
// the run is stuck (a request lost would otherwise show only as a wait to
// the end of the measurement's context).
const stallLimit = 30 * time.Second

func (c *collector) wait(ctx context.Context) error {
	check := time.NewTicker(time.Second)
	defer check.Stop()
	progress, since := -1, time.Now()
	for {
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			c.mu.Lock()
			defer c.mu.Unlock()
			return fmt.Errorf("%d of %d results after %v", len(c.latencies), c.want, ctx.Err())
		case now := <-check.C:
			c.mu.Lock()
			n := len(c.latencies)
			c.mu.Unlock()
			if n != progress {
				progress, since = n, now
			} else if now.Sub(since) > stallLimit {
				return fmt.Errorf("%d of %d results, none for %v", n, c.want, stallLimit)
			}
		}
	}
}

// sender publishes requests as a producer would.
type sender struct {
	nc *nats.Conn
	js jetstream.JetStream
	// acked publishes through JetStream and waits for the stream's
	// acknowledgements (in flush); else a plain publish, as `nats pub`
	// does, which a stream on the subject stores all the same.
	acked bool
	// payload, when set, makes each request's payload; else it is a bare
	// job id. Either way the request_id is the Nats-Msg-Id.
	payload func() []byte
}

func (s sender) send(requestID string) error {
	var data []byte
	if s.payload != nil {
		data = s.payload()
	} else {
		data = []byte(messages.NewRequestID())
	}
	msg := &nats.Msg{Subject: messages.SubjectRefresh, Data: data,
		Header: nats.Header{messages.HeaderMsgID: {requestID}}}
	if !s.acked {
		return s.nc.PublishMsg(msg)
	}
	_, err := s.js.PublishMsgAsync(msg)
	return err
}

func (s sender) flush(ctx context.Context) error {
	if !s.acked {
		return s.nc.FlushWithContext(ctx)
	}
	select {
	case <-s.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// measureWorker runs the worker binary in mode and measures a throughput
// run of cfg.requests and a low-load run of cfg.lowLoad requests.
func measureWorker(cfg benchConfig, ns *server.Server, cmURL, mode string, latency time.Duration) (row, error) {
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return row{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return row{}, err
	}
	if err := resetStreams(js); err != nil {
		return row{}, err
	}
	workerMode, inProcess := splitMode(mode)
	var proc *workerProcess
	switch {
	case mode == modeFloor:
		if err := provision(cfg.workerBin, ns.ClientURL(), cmURL, cfg.concurrency); err != nil {
			return row{}, fmt.Errorf("provision for the floor: %w", err)
		}
		if proc, err = startFloor(ns.ClientURL(), cmURL, cfg.concurrency); err != nil {
			return row{}, err
		}
	case inProcess:
		w, err := startInProcessWorker(ns.ClientURL(), cmURL, workerMode, cfg.concurrency)
		if err != nil {
			return row{}, err
		}
		proc = &workerProcess{inProcess: w}
	default:
		if proc, err = startWorker(cfg.workerBin, ns.ClientURL(), cmURL, mode, cfg.concurrency); err != nil {
			return row{}, err
		}
	}
	defer proc.stop()

	ctx, cancel := measureContext()
	defer cancel()
	fromStream := workerMode == worker.ModeJetStream || mode == modeFloor
	s := sender{nc: nc, js: js, acked: fromStream && cfg.producer == producerJetStream}
	r := row{name: mode}

	// Throughput: publish everything as fast as the producer can.
	full := newCollector(cfg.requests)
	sub, err := nc.Subscribe(messages.SubjectResults, full.onResult)
	if err != nil {
		return row{}, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		return row{}, err
	}
	start, startCPU, startWorkerCPU := time.Now(), selfCPUTime(), proc.cpuTime()
	profiled := func() error { return nil }
	if workerProfile != "" {
		profiled = proc.profileCPU(fmt.Sprintf("%s-%s-%v.pprof", workerProfile, mode, latency), workerProfileTime)
	}
	for i := range cfg.requests {
		requestID := "full-" + strconv.Itoa(i)
		full.publishing(requestID)
		if err := s.send(requestID); err != nil {
			return row{}, err
		}
	}
	if err := s.flush(ctx); err != nil {
		return row{}, err
	}
	stopTimeline := func() {}
	if timeline {
		stopTimeline = full.printTimeline(start, func() time.Duration { return proc.cpuTime() - startWorkerCPU })
	}
	err = full.wait(ctx)
	stopTimeline()
	if err != nil {
		return row{}, err
	}
	r.workerCPU = (proc.cpuTime() - startWorkerCPU) / time.Duration(cfg.requests)
	r.restCPU = (selfCPUTime() - startCPU) / time.Duration(cfg.requests)
	if err := profiled(); err != nil {
		return row{}, fmt.Errorf("worker CPU profile: %w", err)
	}
	_ = sub.Unsubscribe()
	r.throughput = float64(cfg.requests) / full.last.Sub(start).Seconds()
	slices.Sort(full.latencies)
	r.p50, r.p99, r.failures = percentile(full.latencies, .5), percentile(full.latencies, .99), full.failures

	// Low load: one request at a time.
	if tracePrefix != "" {
		stop, err := traceLowLoad(proc, fmt.Sprintf("%s-%%s-%s-%v.trace", tracePrefix, mode, latency))
		if err != nil {
			return row{}, err
		}
		defer func() {
			if err := stop(); err != nil {
				fmt.Fprintln(os.Stderr, "cckm-bench: trace:", err)
			}
		}()
	}
	// One subscription serves the whole run, as a producer waiting for
	// results would hold one: subscribing and unsubscribing around each
	// request put two more protocol operations in the server's read loop
	// just before the publish being timed.
	var low []time.Duration
	var lowLegs []legs
	var current atomic.Pointer[collector]
	lowSub, err := nc.Subscribe(messages.SubjectResults, func(msg *nats.Msg) {
		if c := current.Load(); c != nil {
			c.onResult(msg)
		}
	})
	if err != nil {
		return row{}, err
	}
	defer func() { _ = lowSub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		return row{}, err
	}
	for i := range cfg.lowLoad {
		one := newCollector(1)
		current.Store(one)
		requestID := "low-" + strconv.Itoa(i)
		one.publishing(requestID)
		if err := s.send(requestID); err != nil {
			return row{}, err
		}
		waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
		err := one.wait(waitCtx)
		waitCancel()
		if err != nil {
			return row{}, err
		}
		low = append(low, one.latencies[0])
		lowLegs = append(lowLegs, one.legs...)
		r.failures += one.failures
	}
	r.lowLegs = medianLegs(lowLegs)
	slices.Sort(low)
	r.lowP50, r.lowP99 = percentile(low, .5), percentile(low, .99)
	r.rss = proc.peakRSS()
	return r, nil
}

// traceLowLoad records Go execution traces of this process (NATS server,
// fake CM, driver) and of the worker for traceTime; the worker's is
// fetched from its HTTP_PPROF endpoint. name has a %s for "bench" or
// "worker". stop ends this process's trace early if the run is shorter,
// and waits for the worker's.
func traceLowLoad(proc *workerProcess, name string) (stop func() error, err error) {
	f, err := os.Create(fmt.Sprintf(name, "bench"))
	if err != nil {
		return nil, err
	}
	if err := trace.Start(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	timer := time.AfterFunc(traceTime, trace.Stop)
	workerDone := proc.traceExecution(fmt.Sprintf(name, "worker"), traceTime)
	return func() error {
		timer.Stop()
		trace.Stop()
		err := workerDone()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}, nil
}

// uuidLength is the length of a job id, the payload of the small requests.
const uuidLength = 36

// bigPayloadMin is the size of a large-payload request without padding:
// {"id":"<uuid>","pad":""}.
const bigPayloadMin = len(`{"id":"","pad":""}`) + uuidLength

// bigPayload returns a maker of request payloads of exactly size bytes
// (at least bigPayloadMin): {"id":"<a new uuid>","pad":"xxx…"}. The worker
// ignores the unknown field.
func bigPayload(size int) func() []byte {
	pad := bytes.Repeat([]byte("x"), size-bigPayloadMin)
	return func() []byte {
		b := make([]byte, 0, size)
		b = append(b, `{"id":"`...)
		b = append(b, messages.NewRequestID()...)
		b = append(b, `","pad":"`...)
		b = append(b, pad...)
		return append(b, `"}`...)
	}
}

// measureBacklog publishes backlog requests with no worker running, then
// starts one and times how long it takes to answer them all. payload, when
// set, makes each request's payload (else a bare job id).
func measureBacklog(cfg benchConfig, ns *server.Server, cmURL string, backlog int, payload func() []byte) (time.Duration, int64, error) {
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return 0, 0, err
	}
	// Let a worker create the streams, then stop it.
	if err := provision(cfg.workerBin, ns.ClientURL(), cmURL, cfg.concurrency); err != nil {
		return 0, 0, err
	}

	ctx, cancel := measureContext()
	defer cancel()
	results := newCollector(backlog)
	sub, err := nc.Subscribe(messages.SubjectResults, results.onResult)
	if err != nil {
		return 0, 0, err
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)
	s := sender{nc: nc, js: js, acked: true, payload: payload} // the backlog must be stored before the worker starts
	for i := range backlog {
		requestID := "backlog-" + strconv.Itoa(i)
		results.publishing(requestID)
		if err := s.send(requestID); err != nil {
			return 0, 0, err
		}
	}
	if err := s.flush(ctx); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	proc, err := startWorker(cfg.workerBin, ns.ClientURL(), cmURL, "jetstream", cfg.concurrency)
	if err != nil {
		return 0, 0, err
	}
	defer proc.stop()
	if err := results.wait(ctx); err != nil {
		return 0, 0, err
	}
	return results.last.Sub(start), proc.peakRSS(), nil
}

// resetStreams deletes the worker's streams so each run starts empty.
func resetStreams(js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{"CCKM_CANCEL", "CCKM_CANCEL_RESULTS", "CCKM_CANCEL_DEAD"} {
		if err := js.DeleteStream(ctx, name); err != nil && err != jetstream.ErrStreamNotFound {
			return fmt.Errorf("delete stream %s: %w", name, err)
		}
	}
	return nil
}
