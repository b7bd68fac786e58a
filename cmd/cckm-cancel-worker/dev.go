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

// Dev mode's fixed parts.
const (
	devNATSHost   = "127.0.0.1"
	devNATSPort   = 4222
	devUsername   = "dev"
	devPassword   = "dev-password"
	devSettleTime = 15 * time.Second
)

// devSampleJobs are the jobs the simulated CipherTrust Manager holds: three
// running and one finished of each kind.
var devSampleJobs = []struct {
	kind     cckmtest.Kind
	id       string
	finished bool
}{
	{cckmtest.Refresh, "8155fe39-570a-4132-92ca-e40b7640c7dc", false},
	{cckmtest.Refresh, "2f0a3a5e-6d1b-4c2e-9a4f-3b8d7c6e5f41", false},
	{cckmtest.Refresh, "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f", false},
	{cckmtest.Refresh, "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b", true},
	{cckmtest.BulkJob, "5b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e", false},
	{cckmtest.BulkJob, "7e6d5c4b-3a2f-4e1d-8c0b-9a8f7e6d5c4b", false},
	{cckmtest.BulkJob, "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", false},
	{cckmtest.BulkJob, "f0e1d2c3-b4a5-4968-8776-655443322110", true},
}

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
	for _, job := range devSampleJobs {
		if job.finished {
			cm.AddFinishedJob(job.kind, job.id, "completed")
		} else {
			cm.AddJob(job.kind, job.id)
		}
	}
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
	refresh, bulk := devSampleJobs[0].id, devSampleJobs[4].id
	finished, unknown := devSampleJobs[3].id, "00000000-0000-4000-8000-000000000000"
	p := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	p("")
	p("cckm-cancel-worker dev mode (%s mode)", cfg.Worker.Mode)
	p("  NATS (JetStream on):               %s", e.nats.ClientURL())
	p("  simulated CipherTrust Manager:     %s  (user %q)", e.cm.URL(), devUsername)
	p("  health, readiness, metrics:        http://%s/healthz /readyz /metrics", displayAddr(cfg.HTTPAddr))
	p("")
	p("Sample jobs (running jobs finish %s after a cancel):", devSettleTime)
	for _, job := range devSampleJobs {
		state := "in progress"
		if job.finished {
			state = "completed (cancel answers 409 conflict)"
		}
		p("  %-8s %s  %s", job.kind, job.id, state)
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
