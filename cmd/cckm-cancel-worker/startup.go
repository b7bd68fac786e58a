package main

// Start-up checks that say what is wrong: a port in use before anything
// starts, one login to CipherTrust Manager, NATS that does not answer.

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// startError is a problem found before the worker starts that a setting
// fixes, such as a port in use: the process exits 2 with one line on
// standard error, like a bad setting.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }

func (e *startError) Unwrap() error { return e.err }

// listenHTTP listens on HTTP_ADDR, before anything else starts, so that an
// address in use stops the process at once, naming the setting.
func listenHTTP(addr string) (net.Listener, error) {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &startError{fmt.Errorf("HTTP_ADDR %s: %w", addr, err)}
	}
	return listener, nil
}

// observeLogin sets the login gauge from one token grant: refused, or
// granted. A grant without an answer says nothing of the credentials.
func observeLogin(gauge *worker.LoginGauge, err error) {
	switch {
	case err == nil:
		gauge.Set(false)
	case cckmclient.IsLoginRefused(err):
		gauge.Set(true)
	}
}

// credentialSetting names the settings a refused login was made with,
// never their values.
func credentialSetting(creds cckmclient.Credentials) string {
	switch {
	case creds.RefreshToken != "" && creds.Password != "":
		return "CCKM_REFRESH_TOKEN and CCKM_USERNAME/CCKM_PASSWORD"
	case creds.RefreshToken != "":
		return "CCKM_REFRESH_TOKEN"
	}
	return "CCKM_USERNAME/CCKM_PASSWORD"
}

// loginAtStart logs in to CipherTrust Manager once, in the background, and
// says how it went; the returned channel closes when it is over. Nothing
// that happens here stops the worker or changes its readiness, which is
// about NATS: a CipherTrust Manager outage must not restart every
// instance, and each request tries again anyway.
func loginAtStart(ctx context.Context, client *cckmclient.Client, cfg config, log zerolog.Logger) <-chan struct{} {
	done := make(chan struct{})
	creds := cfg.CCKM.Credentials
	if creds.Mode() == "token" {
		log.Debug().Msg("CCKM_TOKEN is a static token: there is no login to check")
		close(done)
		return done
	}
	go func() {
		defer close(done)
		err := client.Login(ctx)
		switch {
		case ctx.Err() != nil:
		case err == nil:
			log.Info().Str("cckm_host", urlHost(cfg.CCKM.BaseURL)).Str("auth", creds.Mode()).
				Msg("logged in to CipherTrust Manager")
		case cckmclient.IsLoginRefused(err):
			setting := credentialSetting(creds)
			log.Error().Err(err).Str("setting", setting).
				Msg("CipherTrust Manager refused the login: check " + setting + "; every request fails until it is fixed")
		case cckmclient.Retryable(err):
			log.Warn().Err(err).Str("cckm_host", urlHost(cfg.CCKM.BaseURL)).
				Msg("CipherTrust Manager is unreachable at start; every request tries again")
		default:
			log.Error().Err(err).Msg("cannot log in to CipherTrust Manager")
		}
	}()
	return done
}

// Waiting for NATS at start.
const (
	// natsWaitPoll is how often the connection is looked at while NATS
	// does not answer; nats.go itself tries again every ReconnectWait.
	natsWaitPoll = 100 * time.Millisecond
	// natsUnreachableRepeat is how often the worker says again that NATS
	// still does not answer.
	natsUnreachableRepeat = 30 * time.Second
)

// waitForNATS waits until nc is connected, saying at once and then every
// natsUnreachableRepeat that NATS is unreachable, and where. It reports
// false when ctx ended first.
func waitForNATS(ctx context.Context, nc *nats.Conn, cfg config, log zerolog.Logger) bool {
	if nc.IsConnected() {
		return true
	}
	say := func(still string) {
		event := log.Error()
		if err := nc.LastError(); err != nil {
			event = event.Str("error", scrubURLs(err.Error(), cfg.NATSURL))
		}
		event.Msg("NATS " + still + "unreachable at " + redactedURLs(cfg.NATSURL) + "; trying again until it answers")
	}
	say("")
	poll := time.NewTicker(natsWaitPoll)
	defer poll.Stop()
	repeat := time.NewTicker(natsUnreachableRepeat)
	defer repeat.Stop()
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			return false
		case <-repeat.C:
			say("still ")
		case <-poll.C:
		}
	}
	return true
}
