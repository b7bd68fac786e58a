// Command cckm-bench measures the worker against the limit CipherTrust
// Manager itself allows. In one run, on one embedded NATS server and one
// cckmtest fake with a configurable latency, it measures:
//
//   - limit: direct HTTP cancels at concurrency C with the worker's client
//     settings;
//   - floor: the least a correct at-least-once JetStream worker does
//     (consume, call, store the result, ack), in a process of its own;
//   - jetstream: the worker binary in jetstream mode at WORKER_CONCURRENCY=C;
//   - core: the worker binary in core mode;
//   - backlog: the worker's peak RSS while it works off a backlog of
//     requests already waiting in the stream, at two backlog sizes, and a
//     backlog of large requests.
//
// It prints throughput, the ratio to the limit (measured before and after
// each mode) and to the floor, p50 and p99 publish-to-result latency (at
// full load and at low load), the latency the worker adds at low load and
// where it goes, the worker process's peak RSS (VmHWM), and CPU per
// request.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
)

// benchConfig is what one run measures.
type benchConfig struct {
	latencies   []time.Duration
	concurrency int
	requests    int
	lowLoad     int
	backlogs    []int
	workerBin   string
	modes       []string
	runs        int
	producer    string
	hops        bool
	tracing     string // tracingOff or tracingOn
	// bigBacklog requests of bigPayload bytes each make the large-payload
	// backlog run (bigBacklog 0: skip it).
	bigBacklog, bigPayload int
}

// The large-payload backlog's defaults: 1,000 requests of 60 KiB, under the
// 64 KiB max_msg_size the request stream may be given.
const (
	defaultBigBacklog = 1000
	defaultBigPayload = 60 << 10
)

// The producers of the throughput runs in the jetstream and floor modes.
const (
	producerPub       = "pub"       // plain publish, as `nats pub` does
	producerJetStream = "jetstream" // publish and wait for the stream's acknowledgements
)

func main() {
	if addr := os.Getenv(echoEnv); addr != "" {
		echoChild(addr)
		return
	}
	if os.Getenv(floorEnv) != "" {
		floorChild()
		return
	}
	cfg := benchConfig{}
	latencies := flag.String("latency", "20ms,0ms", "CipherTrust Manager latencies to measure, comma-separated")
	flag.IntVar(&cfg.concurrency, "c", 64, "concurrency C: WORKER_CONCURRENCY and the direct client's")
	flag.IntVar(&cfg.requests, "n", 20000, "requests per throughput run")
	flag.IntVar(&cfg.lowLoad, "low", 300, "requests of the low-load latency run (one at a time)")
	flag.IntVar(&cfg.runs, "runs", 3, "rounds per latency; the summary rows are their medians")
	backlogs := flag.String("backlog", "10000,100000", "backlog sizes for the RSS runs (empty: skip)")
	flag.IntVar(&cfg.bigBacklog, "big-backlog", defaultBigBacklog, "requests of the large-payload backlog RSS run (0: skip)")
	flag.IntVar(&cfg.bigPayload, "big-payload", defaultBigPayload, "bytes of each request's payload in the large-payload backlog: {\"id\":\"<uuid>\",\"pad\":\"xxx…\"}")
	flag.StringVar(&cfg.producer, "producer", producerPub, "how requests are published in the jetstream and floor modes: pub (plain, as nats pub) or jetstream (waiting for the stream's acks)")
	modes := flag.String("modes", "floor,jetstream,core", "modes to measure: floor (the least a correct JetStream worker does, a process of its own), jetstream, core; with the suffix -inproc (jetstream-inproc) the worker's code runs inside this process instead of the binary")
	flag.StringVar(&cfg.workerBin, "worker", "", "worker binary (default: build ./cmd/cckm-cancel-worker)")
	flag.StringVar(&workerLog, "worker-log", "", "append the workers' output to this file")
	flag.StringVar(&workerLogLevel, "worker-log-level", "info", "the workers' LOG_LEVEL")
	flag.Func("worker-env", "add `NAME=value` to the environment of the workers and the floor (repeatable), to try a setting such as GOMAXPROCS=1", func(s string) error {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("%q: want NAME=value", s)
		}
		workerEnv = append(workerEnv, s)
		return nil
	})
	flag.StringVar(&workerProfile, "worker-cpuprofile", "", "write CPU profiles of the worker's throughput runs to `prefix`-<mode>-<latency>.pprof")
	flag.DurationVar(&workerProfileTime, "worker-cpuprofile-time", workerProfileTime, "how much of each throughput run the worker's CPU profile covers (whole seconds)")
	flag.StringVar(&tracePrefix, "trace", "", "write Go execution traces of this process and the worker during the first 2 s of each low-load run to `prefix`-{bench,worker}-<mode>-<latency>.trace")
	flag.BoolVar(&timeline, "timeline", false, "print results and worker CPU every 250 ms of each throughput run to stderr")
	flag.StringVar(&cfg.tracing, "tracing", tracingOff, "off, or on: the workers trace every request, exporting over OTLP/HTTP to a receiver in this process that discards what it gets")
	flag.BoolVar(&cfg.hops, "hops", true, "measure what a TCP round trip between processes costs on this machine, busy and after the CM latency idle")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (NATS server, fake CM, driver) to the file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}

	var err error
	if cfg.latencies, err = parseDurations(*latencies); err != nil {
		fail(err)
	}
	if cfg.backlogs, err = parseInts(*backlogs); err != nil {
		fail(err)
	}
	cfg.modes = strings.Split(*modes, ",")
	if cfg.bigBacklog < 0 {
		fail(fmt.Errorf("-big-backlog %d: must not be negative", cfg.bigBacklog))
	}
	if cfg.bigBacklog > 0 && cfg.bigPayload < bigPayloadMin {
		fail(fmt.Errorf("-big-payload %d: must be at least %d, the request without padding", cfg.bigPayload, bigPayloadMin))
	}
	if cfg.producer != producerPub && cfg.producer != producerJetStream {
		fail(fmt.Errorf("-producer %q: must be %s or %s", cfg.producer, producerPub, producerJetStream))
	}
	if cfg.tracing != tracingOff && cfg.tracing != tracingOn {
		fail(fmt.Errorf("-tracing %q: must be %s or %s", cfg.tracing, tracingOff, tracingOn))
	}
	if err := runBench(cfg); err != nil {
		pprof.StopCPUProfile()
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "cckm-bench:", err)
	os.Exit(1)
}

func runBench(cfg benchConfig) error {
	if cfg.workerBin == "" {
		dir, err := os.MkdirTemp("", "cckm-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.workerBin = filepath.Join(dir, "cckm-cancel-worker")
		build := exec.Command("go", "build", "-trimpath", "-o", cfg.workerBin, "./cmd/cckm-cancel-worker")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build the worker (run from the repository root): %w", err)
		}
	}
	if cfg.tracing == tracingOn {
		var err error
		if sink, err = startOTLPSink(); err != nil {
			return fmt.Errorf("OTLP receiver: %w", err)
		}
		defer sink.close()
		defer sink.report()
		workerEnv = append(workerEnv, sink.env()...)
	}
	printMachine(cfg)
	if cfg.hops {
		idle := slices.Max(append([]time.Duration{time.Millisecond}, cfg.latencies...))
		if err := measureHops(idle, 200); err != nil {
			return fmt.Errorf("hops: %w", err)
		}
	}
	var all [][][]row
	for _, latency := range cfg.latencies {
		rounds, err := runLatency(cfg, latency)
		if err != nil {
			return err
		}
		all = append(all, rounds)
	}
	if len(all) > 0 {
		printSummary(cfg.latencies, all)
	}
	if len(cfg.backlogs) > 0 || cfg.bigBacklog > 0 {
		return runBacklogs(cfg)
	}
	return nil
}

// runLatency measures the limit and each mode at one CM latency and
// returns the rounds' rows: the limit, then each mode and the limit after
// it.
func runLatency(cfg benchConfig, latency time.Duration) ([][]row, error) {
	fmt.Printf("\n## CipherTrust Manager latency %v, C=%d, %d requests, producer %s, tracing %s\n\n", latency, cfg.concurrency, cfg.requests, cfg.producer, cfg.tracing)
	if cfg.runs > 1 && len(cfg.modes) > 1 {
		fmt.Printf("Rounds 2, 4, ... run the modes in the opposite order; each mode is held to the limits measured just before and after it.\n\n")
	}
	fmt.Println(tableHeader)
	ns, err := startNATS()
	if err != nil {
		return nil, err
	}
	defer shutdownNATS(ns)
	cm := cckmtest.NewServer(cckmtest.Options{
		Username: benchUser, Password: benchPassword, AnyJob: true, NoRecord: true, Latency: latency,
		SettleAfter: -1,
	})
	defer cm.Close()

	// Each round measures the limit and every mode, so that a slow spell
	// of the machine weighs on both sides of a ratio; the summary is the
	// median of the rounds.
	var rounds [][]row
	for round := range cfg.runs {
		// The limit is measured before and after each mode, and the mode
		// is held to the mean of the two: the machine's speed drifts by
		// 20% and more within a minute, and a single limit measured a
		// mode earlier made the ratio swing with it.
		before, err := measureDirect(cm.URL(), cfg.concurrency, cfg.requests, cfg.lowLoad)
		if err != nil {
			return nil, err
		}
		before.ratio = 1
		// Every other round runs the modes in the opposite order, so that a
		// drift of the machine's speed within a round (or anything a run
		// leaves behind for the next) weighs on each mode alike. The rows
		// keep the modes' order: the mode's row, then the limit after it.
		rows := make([]row, 1+2*len(cfg.modes))
		rows[0] = before
		for k := range cfg.modes {
			i := k
			if round%2 == 1 {
				i = len(cfg.modes) - 1 - k
			}
			mode := cfg.modes[i]
			r, err := measureWorker(cfg, ns, cm.URL(), mode, latency)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", mode, err)
			}
			after, err := measureDirect(cm.URL(), cfg.concurrency, cfg.requests, cfg.lowLoad)
			if err != nil {
				return nil, err
			}
			after.ratio = 1
			r.addedP50 = r.lowP50 - (before.lowP50+after.lowP50)/2
			r.ratio = r.throughput / ((before.throughput + after.throughput) / 2)
			rows[1+2*i], rows[2+2*i] = r, after
			before = after
		}
		setRatioToFloor(rows)
		for _, r := range rows {
			r.name = fmt.Sprintf("%s (round %d)", r.name, round+1)
			r.print()
		}
		rounds = append(rounds, rows)
	}
	if cfg.runs > 1 {
		for i := range rounds[0] {
			median(rounds, i).print()
		}
	}
	return rounds, nil
}

// backlogRun is one backlog RSS run: requests waiting, each with a payload
// of payloadSize bytes (0: a bare job id).
type backlogRun struct{ requests, payloadSize int }

// runBacklogs measures the worker's peak RSS while it works off backlogs of
// different sizes that were waiting in the stream before it started: of
// small requests, then of large ones.
func runBacklogs(cfg benchConfig) error {
	var runs []backlogRun
	for _, n := range cfg.backlogs {
		runs = append(runs, backlogRun{requests: n})
	}
	if cfg.bigBacklog > 0 {
		runs = append(runs, backlogRun{requests: cfg.bigBacklog, payloadSize: cfg.bigPayload})
	}
	fmt.Printf("\n## Backlog: requests waiting in CCKM_CANCEL before the worker starts (CM latency 0, C=%d)\n\n", cfg.concurrency)
	fmt.Println("| backlog | payload | drain time | throughput (req/s) | worker peak RSS |")
	fmt.Println("|---:|---:|---:|---:|---:|")
	for _, run := range runs {
		backlog := run.requests
		var payload func() []byte
		payloadSize := uuidLength
		if run.payloadSize > 0 {
			payload, payloadSize = bigPayload(run.payloadSize), run.payloadSize
		}
		ns, err := startNATS()
		if err != nil {
			return err
		}
		cm := cckmtest.NewServer(cckmtest.Options{
			Username: benchUser, Password: benchPassword, AnyJob: true, NoRecord: true, SettleAfter: -1,
		})
		elapsed, rss, err := measureBacklog(cfg, ns, cm.URL(), backlog, payload)
		cm.Close()
		shutdownNATS(ns)
		if err != nil {
			return fmt.Errorf("backlog %d of %d B: %w", backlog, payloadSize, err)
		}
		fmt.Printf("| %d | %d B | %.2fs | %.0f | %.1f MiB |\n", backlog, payloadSize, elapsed.Seconds(),
			float64(backlog)/elapsed.Seconds(), float64(rss)/(1<<20))
	}
	return nil
}

func startNATS() (*server.Server, error) {
	dir, err := os.MkdirTemp("", "cckm-bench-nats-")
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
		JetStreamMaxMemory: 1 << 30, JetStreamMaxStore: 8 << 30,
	})
	if err != nil {
		return nil, err
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("embedded NATS did not start")
	}
	return ns, nil
}

func shutdownNATS(ns *server.Server) {
	dir := ns.JetStreamConfig().StoreDir
	ns.Shutdown()
	ns.WaitForShutdown()
	_ = os.RemoveAll(dir)
}

func printMachine(cfg benchConfig) {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	fmt.Printf("# cckm-bench %s\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("machine: %s, %d CPUs, %s %s/%s; NATS server, fake CM, load driver and worker share it\n",
		model, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("worker binary: %s\n", cfg.workerBin)
}

func parseDurations(list string) ([]time.Duration, error) {
	var out []time.Duration
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("-latency %q: %w", s, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func parseInts(list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
			return nil, fmt.Errorf("-backlog %q: not a positive number", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// context for the whole of one measurement.
func measureContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Minute)
}
