package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
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

// devEnv is dev mode's embedded NATS server and simulated CipherTrust
// Manager.
type devEnv struct {
	nats    *server.Server
	cm      *cckmtest.Server
	dataDir string
}

// startDev starts an embedded NATS server with JetStream on
// 127.0.0.1:4222, its store in a temporary directory, and the simulated
// CipherTrust Manager with the sample jobs.
func startDev(cfg config, log zerolog.Logger) (*devEnv, error) {
	dataDir, err := os.MkdirTemp("", "cckm-cancel-worker-dev-")
	if err != nil {
		return nil, fmt.Errorf("dev mode: %w", err)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "cckm-dev",
		Host:       devNATSHost,
		Port:       devNATSPort,
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
		return nil, fmt.Errorf("dev mode: embedded NATS did not start on %s:%d (is another NATS server using the port?)", devNATSHost, devNATSPort)
	}
	cm := cckmtest.NewServer(cckmtest.Options{
		Username:    devUsername,
		Password:    devPassword,
		SettleAfter: devSettleTime,
	})
	cm.AddSampleJobs()
	log.Info().Str("nats", ns.ClientURL()).Str("store", dataDir).Str("cckm_url", cm.URL()).
		Msg("dev mode: embedded NATS with JetStream and a simulated CipherTrust Manager")
	return &devEnv{nats: ns, cm: cm, dataDir: dataDir}, nil
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

// printHowTo prints the sample jobs and the commands to try.
func (e *devEnv) printHowTo(out io.Writer, cfg config) {
	jobs := cckmtest.SampleJobs
	refresh, bulk := jobs[0].ID, jobs[4].ID
	finished, unknown := jobs[3].ID, "00000000-0000-4000-8000-000000000000"
	p := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	p("")
	p("cckm-cancel-worker dev mode (%s mode)", cfg.Worker.Mode)
	p("  NATS (JetStream on):               %s", e.nats.ClientURL())
	p("  simulated CipherTrust Manager:     %s  (user %q)", e.cm.URL(), devUsername)
	p("  health, readiness, metrics:        http://%s/healthz /readyz /metrics", displayAddr(cfg.HTTPAddr))
	p("")
	p("Sample jobs (running jobs finish %s after a cancel):", devSettleTime)
	for _, job := range jobs {
		p("  %-8s %s  %s", job.Kind, job.ID, job.State())
	}
	p("")
	p("Try it with the nats CLI (go install github.com/nats-io/natscli/nats@latest):")
	p("  nats sub 'cckm.cancel.>'                                  # watch requests and results")
	if cfg.Worker.Mode == "core" {
		p("  nats req cckm.cancel.refresh %s", refresh)
		p("  nats req cckm.cancel.bulkjob '{\"id\":\"%s\",\"request_id\":\"ir-1\"}'", bulk)
	} else {
		p("  nats pub cckm.cancel.refresh %s", refresh)
		p("  nats pub cckm.cancel.bulkjob '{\"id\":\"%s\",\"request_id\":\"ir-1\"}'", bulk)
		p("  nats pub cckm.cancel.refresh %s -H Cckm-Reply-To:my.answers   # and: nats sub my.answers", refresh)
		p("  nats stream view %s                           # the stored results", "CCKM_CANCEL_RESULTS")
	}
	p("  nats pub cckm.cancel.refresh %s    # finished job: failed, conflict", finished)
	p("  nats pub cckm.cancel.bulkjob %s    # unknown job: failed, not_found", unknown)
	p("  nats pub cckm.cancel.bulkjob not-a-uuid                      # rejected, invalid_request")
	p("")
}

// displayAddr turns ":8080" into "127.0.0.1:8080" for printing.
func displayAddr(addr string) string {
	if len(addr) > 0 && addr[0] == ':' {
		return "127.0.0.1" + addr
	}
	return addr
}
