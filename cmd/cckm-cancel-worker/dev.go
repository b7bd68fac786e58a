package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// Dev mode's fixed parts; the sample jobs and credentials are cckmtest's,
// shared with cmd/cckm-fake-cm.
const (
	devNATSHost   = "127.0.0.1"
	devNATSPort   = 4222
	devUsername   = cckmtest.SampleUsername
	devPassword   = cckmtest.SamplePassword
	devSettleTime = cckmtest.SampleSettleAfter
)

// howToKindsWidth is the width the banner's list of kinds is wrapped to, so
// that it reads in a terminal of 100 columns.
const howToKindsWidth = 96

// devEnv is dev mode's embedded NATS server and simulated CipherTrust
// Manager.
type devEnv struct {
	nats    *server.Server
	cm      *cckmtest.Server
	dataDir string
}

// startDev starts an embedded NATS server with JetStream on
// 127.0.0.1:DEV_NATS_PORT, its store in a temporary directory, and the
// simulated CipherTrust Manager with the sample jobs. A port in use is a
// *startError, found before anything starts.
func startDev(cfg config, log zerolog.Logger) (*devEnv, error) {
	port := cfg.DevNATSPort
	if port == 0 {
		port = server.RANDOM_PORT
	} else if err := checkDevPort(port); err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "cckm-cancel-worker-dev-")
	if err != nil {
		return nil, fmt.Errorf("dev mode: %w", err)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "cckm-dev",
		Host:       devNATSHost,
		Port:       port,
		JetStream:  true,
		StoreDir:   dataDir,
		NoSigs:     true,
	})
	if err != nil {
		_ = os.RemoveAll(dataDir)
		return nil, fmt.Errorf("dev mode: embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		_ = os.RemoveAll(dataDir)
		return nil, fmt.Errorf("dev mode: embedded NATS did not start on %s:%d", devNATSHost, cfg.DevNATSPort)
	}
	cm := newDevCM()
	log.Info().Str("nats", ns.ClientURL()).Str("store", dataDir).Str("cckm_url", cm.URL()).
		Msg("dev mode: embedded NATS with JetStream and a simulated CipherTrust Manager")
	return &devEnv{nats: ns, cm: cm, dataDir: dataDir}, nil
}

// checkDevPort listens on the dev NATS port and lets it go: the embedded
// server would otherwise try for seconds before it gives up.
func checkDevPort(port int) error {
	addr := net.JoinHostPort(devNATSHost, strconv.Itoa(port))
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return &startError{fmt.Errorf("dev mode: %s is in use (another NATS server, or another dev worker?): stop it, or set DEV_NATS_PORT (0: any free port)", addr)}
	}
	return listener.Close()
}

// newDevCM starts the simulated CipherTrust Manager of dev mode: every kind
// of job, any UUID a running job of whatever kind it is asked for as, but
// for the sample jobs (finished ones answer 409, unknown ones 404).
func newDevCM() *cckmtest.Server {
	cm := cckmtest.NewServer(cckmtest.Options{
		Username:    devUsername,
		Password:    devPassword,
		SettleAfter: devSettleTime,
		AnyJob:      true,
		NoRecord:    true, // dev mode may run for days: no call record to grow
	})
	cm.AddSampleJobs()
	return cm
}

// apply points the configuration at the dev servers. HTTP_ADDR, LOG_* and
// WORKER_* still apply.
func (e *devEnv) apply(cfg config) config {
	cfg.NATSURL = e.nats.ClientURL()
	cfg.NATSCreds, cfg.NATSNKey, cfg.NATSUser, cfg.NATSPassword, cfg.NATSToken = "", "", "", "", ""
	cfg.NATSCAFile, cfg.NATSCertFile, cfg.NATSKeyFile = "", "", ""
	cfg.CCKM.BaseURL = e.cm.URL()
	cfg.CCKM.Credentials = cckmclient.Credentials{Username: devUsername, Password: devPassword}
	cfg.CCKM.CAFile = ""
	cfg.CCKM.InsecureSkipVerify = false
	return cfg
}

// Close stops the dev servers and removes the store.
func (e *devEnv) Close() {
	e.cm.Close()
	e.nats.Shutdown()
	e.nats.WaitForShutdown()
	_ = os.RemoveAll(e.dataDir)
}

// bannerPoll is how often printHowToWhenReady looks whether the worker
// consumes.
const bannerPoll = 50 * time.Millisecond

// printHowToWhenReady prints the banner (printHowTo) once the login at
// start is over and the worker consumes, so that it is the last thing on
// the screen, not pushed off it by the start-up lines. The returned channel
// closes when it has printed, or ctx ended first.
func (e *devEnv) printHowToWhenReady(ctx context.Context, out io.Writer, cfg config, ready readiness, loggedIn <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-loggedIn:
		case <-ctx.Done():
			return
		}
		poll := time.NewTicker(bannerPoll)
		defer poll.Stop()
		for ready.Ready() != nil {
			select {
			case <-poll.C:
			case <-ctx.Done():
				return
			}
		}
		// One write, so that no log line lands inside the banner.
		var banner bytes.Buffer
		e.printHowTo(&banner, cfg)
		_, _ = out.Write(banner.Bytes())
	}()
	return done
}

// printHowTo prints what runs where, the kinds, and commands to try: a new
// UUID of one kind, then the sample jobs grouped by the outcome they show.
func (e *devEnv) printHowTo(out io.Writer, cfg config) {
	p := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	send := "nats pub"
	if cfg.Worker.Mode == worker.ModeCore {
		send = "nats req" // core mode answers the request's reply subject
	}
	fresh := cckmtest.SampleFreshKind.RequestSubject()

	p("")
	p("cckm-cancel-worker dev mode (%s mode)", cfg.Worker.Mode)
	p("  NATS (JetStream on):               %s", e.nats.ClientURL())
	p("  simulated CipherTrust Manager:     %s  (user %q)", e.cm.URL(), devUsername)
	p("  health, readiness, metrics:        http://%s/healthz /readyz /metrics", displayAddr(cfg.HTTPAddr))
	p("")
	p("The simulated CipherTrust Manager knows every kind of job, and any new UUID is a running")
	p("job there: a cancel sets abort, and the job completes %s later. The kinds:", devSettleTime)
	for _, line := range wrapWords(kindNames(), howToKindsWidth) {
		p("  %s", line)
	}
	p("")
	if cfg.Worker.Mode == worker.ModeCore {
		p("Core mode: send with `nats req`; the reply is the result.")
	} else {
		p("JetStream mode: send with `nats pub`; the stream acknowledges the request, and the result")
		p("comes on cckm.cancel.<kind>.result. For `nats req`, whose reply is the result: WORKER_MODE=core (make run-core).")
	}
	p("Try it with the nats CLI (go install github.com/nats-io/natscli/nats@latest):")
	p("  # watch requests, results and settled events")
	p("  nats sub 'cckm.cancel.>'")
	p("  # a new job: canceled")
	p("  %s %s $(uuidgen)", send, fresh)
	groups := []struct {
		heading string
		in      func(cckmtest.SampleJob) bool
		request func(cckmtest.SampleJob) string
	}{
		{
			fmt.Sprintf("sample jobs: canceled; with \"follow\" settled %s later as well", devSettleTime),
			func(job cckmtest.SampleJob) bool { return !job.Finished && !job.Unknown },
			func(job cckmtest.SampleJob) string { return fmt.Sprintf(`'{"id":"%s","follow":true}'`, job.ID) },
		},
		{
			"finished jobs: failed, conflict",
			func(job cckmtest.SampleJob) bool { return job.Finished && !job.Unknown },
			func(job cckmtest.SampleJob) string { return job.ID },
		},
		{
			"an unknown job: failed, not_found",
			func(job cckmtest.SampleJob) bool { return job.Unknown },
			func(job cckmtest.SampleJob) string { return job.ID },
		},
	}
	for _, group := range groups {
		p("  # %s", group.heading)
		for _, job := range cckmtest.SampleJobs {
			if group.in(job) {
				p("  %s %s %s", send, job.Kind.RequestSubject(), group.request(job))
			}
		}
	}
	if cfg.Worker.Mode != worker.ModeCore {
		p("  # the result sent to a subject of your own as well (and: nats sub my.answers)")
		p("  nats pub %s $(uuidgen) -H %s:my.answers", fresh, messages.HeaderReplyTo)
		p("  # the stored results")
		p("  nats stream view %s", worker.ResultStream)
	}
	p("  # not a UUID: rejected, invalid_request")
	p("  %s %s not-a-uuid", send, fresh)
	p("")
}

// kindNames returns every kind's name, in the kinds table's order.
func kindNames() []string {
	names := make([]string, len(messages.Kinds))
	for i, kind := range messages.Kinds {
		names[i] = string(kind)
	}
	return names
}

// wrapWords joins words with spaces into lines of at most width bytes (a
// longer word gets a line of its own).
func wrapWords(words []string, width int) []string {
	var lines []string
	var line strings.Builder
	for _, word := range words {
		if line.Len() > 0 && line.Len()+1+len(word) > width {
			lines = append(lines, line.String())
			line.Reset()
		}
		if line.Len() > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(word)
	}
	if line.Len() > 0 {
		lines = append(lines, line.String())
	}
	return lines
}

// displayAddr turns ":8080" into "127.0.0.1:8080" for printing.
func displayAddr(addr string) string {
	if len(addr) > 0 && addr[0] == ':' {
		return "127.0.0.1" + addr
	}
	return addr
}
