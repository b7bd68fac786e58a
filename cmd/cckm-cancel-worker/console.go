package main

// What a person at a terminal sees: the log format, the one-line summary
// of the configuration.

import (
	"io"
	"net/url"
	"os"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// defaultLogFormat is LOG_FORMAT when it is not set: console for a person
// at a terminal, json for a log collector.
func defaultLogFormat(stderr io.Writer) string {
	if isTerminal(stderr) {
		return "console"
	}
	return "json"
}

// urlHost is the host (and port) of a URL, or "" when it has none.
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// logSummary logs the configuration in one short line, at info: what a
// person checks first. The whole configuration follows at debug.
func logSummary(log zerolog.Logger, cfg config) {
	log.Info().
		Str("mode", string(cfg.Worker.Mode)).
		Int("kinds", len(messages.Kinds)).
		Int("concurrency", cfg.Worker.Concurrency).
		Str("cckm_host", urlHost(cfg.CCKM.BaseURL)).
		Str("nats_url", redactedURLs(cfg.NATSURL)).
		Bool("provision", cfg.Worker.Provision).
		Bool("follow", cfg.Worker.Follow).
		Msg("starting")
}
