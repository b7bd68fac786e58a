// Command cckm-cancel asks the cancellation worker to cancel CipherTrust
// Manager CCKM jobs and waits for its answers: the producer side of the
// request and result subjects, for incident response.
//
//	cckm-cancel [flags] KIND [id...]
//	cckm-cancel kinds [--json]
//
// KIND is one of the kinds of CCKM job the worker cancels: the last token of
// its request subject, such as refresh, bulkjob, azure-bulkjob or
// google-sync. "cckm-cancel kinds" lists them all, with their subjects and
// what each cancels, from the one table of kinds the worker reads too; an
// unknown kind exits 2 and names the kinds that are close to it.
//
// Job ids come from the arguments, from --file (one id per line; blank
// lines and # comments ignored; "-" is standard input), and, when neither
// names any and standard input is not a terminal, from standard input.
// Every id is checked to be a UUID before anything is sent: one bad id and
// nothing is sent at all (exit status 2). An id given twice is sent once.
//
// Each request is published on cckm.cancel.<kind> as
// {"id": ..., "request_id": ...} (plus "follow": true with --follow), with
// Nats-Msg-Id set to its request_id and Cckm-Reply-To set to a subject under
// the run's one inbox subscription, and its result is matched by
// request_id. When a JetStream stream holds the request subject the request
// goes through JetStream (the stream's acknowledgement is awaited and a
// duplicate Nats-Msg-Id is reported as such); otherwise it is published on
// core NATS with a reply subject, so that "no responders" (no worker in
// core mode, no stream) is known at once instead of after --timeout. At
// most --concurrency requests await their result at once.
//
// Outcomes: the worker's canceled, failed or rejected; or, decided here,
// timeout (no result within --timeout; in JetStream mode the request stays
// queued and will still be carried out), unsent (no responders, duplicate
// Nats-Msg-Id, publish error) and interrupted (SIGINT or SIGTERM). Results
// are printed as a table at the end, or with --json as JSON lines as they
// arrive: the worker's events exactly as received, and for the outcomes
// decided here a line of the same shape with an error code of timeout,
// no_responders, duplicate, publish_failed or interrupted.
//
// With --follow the request asks the worker to follow the job to its end
// (poll it until CipherTrust Manager reports it completed or failed, and
// publish a settled event), and for each request that ended canceled the
// command also waits, up to --follow-timeout, for the settled event with
// the same request_id, kind and job id on cckm.cancel.<kind>.settled (or on
// the Cckm-Reply-To subject).
//
// Exit status: 0 when every request ended canceled (and, with --follow,
// settled true); 1 when any did not; 2 for a usage error, a bad id, or no
// connection to NATS, with one line on standard error saying which, and
// nothing sent.
//
// Connection settings are named as the nats CLI names them: -s/--server
// (NATS_URL), --creds (NATS_CREDS), --nkey (NATS_NKEY), --user/--password
// (NATS_USER/NATS_PASSWORD), --token (NATS_TOKEN), --tlsca, --tlscert,
// --tlskey (NATS_CA, NATS_CERT, NATS_KEY, or the worker's NATS_CA_FILE,
// NATS_CERT_FILE, NATS_KEY_FILE), and --context (NATS_CONTEXT, else the
// context selected in the nats CLI's context.txt). A flag wins over its
// variable, which wins over the context. So that no secret has to be on
// the command line, where ps shows it, the password and the token may also
// come from a file: --password-file and --token-file (NATS_PASSWORD_FILE,
// NATS_TOKEN_FILE), the content trimmed of surrounding white space; a
// secret given both as a value and as a file is a usage error. The repository's README.md says
// it all at more length.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Exit statuses.
const (
	exitCanceled    = 0 // every request ended canceled (and settled, with --follow)
	exitNotCanceled = 1 // at least one did not
	exitUsage       = 2 // bad usage, bad ids, or no connection: nothing was sent
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command; it returns the exit status.
func run(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "cckm-cancel: %v\n", err)
		return exitUsage
	}
	cfg, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitCanceled
	}
	if err != nil {
		return fail(err)
	}
	if cfg.listKinds {
		printKinds(stdout, cfg.json)
		return exitCanceled
	}
	ids, err := collectIDs(cfg.ids, cfg.file, stdin, stderr)
	if err != nil {
		return fail(err)
	}
	requests, err := newRequests(cfg.kind, ids, cfg.requestPrefix)
	if err != nil {
		return fail(err)
	}
	settings, err := resolveConnection(cfg.conn, env)
	if err != nil {
		return fail(err)
	}
	conn, err := connect(settings)
	if err != nil {
		return fail(err)
	}
	defer conn.nc.Close()

	report := newReporter(stdout, stderr, cfg.json, cfg.follow, showProgress(cfg.progress, stderr, len(requests)), len(requests))
	s, err := newSender(ctx, conn, cfg.kind, requests, cfg.send, report, stderr)
	if err != nil {
		return fail(err)
	}
	outcomes := s.sendAll(ctx)
	s.close()
	if !report.finish(outcomes) {
		return exitNotCanceled
	}
	return exitCanceled
}

// config is everything the command line says.
type config struct {
	listKinds     bool // the kinds subcommand: list the kinds, send nothing
	kind          messages.Kind
	ids           []string
	file          string
	conn          connSettings
	send          sendOptions
	json          bool
	follow        bool
	requestPrefix string
	progress      string
}

// Defaults of the flags.
const (
	defaultTimeout       = 60 * time.Second
	defaultFollowTimeout = 15 * time.Minute
	defaultConcurrency   = 32
)

// usageText is what -h prints before the flags; its kinds come from the
// kinds table.
func usageText() string {
	return `Usage: cckm-cancel [flags] KIND [id...]
       cckm-cancel kinds [--json]

Asks the cancellation worker to cancel CipherTrust Manager jobs of one KIND and
waits for each result. Ids come from the arguments, --file, or standard input.
"cckm-cancel kinds" lists the kinds with their subjects.
Exit status: 0 all canceled, 1 any not canceled, 2 usage or connection error.

Kinds:
` + kindsUsage() + `
Flags:
`
}

// parseArgs reads the command line. Flags may come before or after the
// kind and the ids.
func parseArgs(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("cckm-cancel", flag.ContinueOnError)
	// A usage error is one line, printed by the caller; only -h prints the
	// usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	printUsage := func() {
		fmt.Fprint(stderr, usageText())
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	c := &cfg.conn
	fs.StringVar(&c.URL, "server", "", "NATS server URLs, comma-separated (env NATS_URL; default "+defaultURL+")")
	fs.StringVar(&c.URL, "s", "", "short for --server")
	fs.StringVar(&c.Creds, "creds", "", "NATS credentials file (env NATS_CREDS)")
	fs.StringVar(&c.NKey, "nkey", "", "NATS NKey seed file (env NATS_NKEY)")
	fs.StringVar(&c.User, "user", "", "NATS user (env NATS_USER)")
	fs.StringVar(&c.Password, "password", "", "NATS password (env NATS_PASSWORD); ps shows it: prefer --password-file or the environment")
	fs.StringVar(&c.PasswordFile, "password-file", "", "read the NATS password from `FILE`, white space trimmed (env NATS_PASSWORD_FILE)")
	fs.StringVar(&c.Token, "token", "", "NATS token (env NATS_TOKEN); ps shows it: prefer --token-file or the environment")
	fs.StringVar(&c.TokenFile, "token-file", "", "read the NATS token from `FILE`, white space trimmed (env NATS_TOKEN_FILE)")
	fs.StringVar(&c.CA, "tlsca", "", "CA bundle for the NATS server's certificate (env NATS_CA or NATS_CA_FILE)")
	fs.StringVar(&c.Cert, "tlscert", "", "TLS client certificate (env NATS_CERT or NATS_CERT_FILE)")
	fs.StringVar(&c.Key, "tlskey", "", "TLS client key (env NATS_KEY or NATS_KEY_FILE)")
	fs.StringVar(&c.Context, "context", "", "nats CLI context to connect with (env NATS_CONTEXT; default the selected one)")
	fs.StringVar(&cfg.file, "file", "", "read ids from `FILE`, one per line (- for standard input)")
	fs.DurationVar(&cfg.send.timeout, "timeout", defaultTimeout, "how long to wait for each request's result")
	fs.DurationVar(&cfg.send.followTimeout, "follow-timeout", defaultFollowTimeout, "with --follow, how long to wait for each settled event after the result")
	fs.BoolVar(&cfg.follow, "follow", false, "ask the worker to follow each job to its end and wait for the settled events")
	fs.BoolVar(&cfg.json, "json", false, "print JSON lines, each result as received (with kinds, each kind), instead of a table")
	fs.StringVar(&cfg.requestPrefix, "request-prefix", "", "request_id = `PREFIX` + 1, 2, ... (default a random UUID per request)")
	fs.IntVar(&cfg.send.concurrency, "concurrency", defaultConcurrency, "requests awaiting their result at once")
	fs.StringVar(&cfg.progress, "progress", "auto", "progress line on standard error: auto (a terminal and more than 10 ids), always, never")

	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage()
	}
	if err != nil {
		return cfg, err
	}
	if len(positional) == 0 {
		return cfg, fmt.Errorf("missing the kind of job (%s %s lists them; -h for help)", commandName, kindsCommand)
	}
	if positional[0] == kindsCommand {
		if len(positional) > 1 {
			return cfg, fmt.Errorf("%s takes no arguments, got %q", kindsCommand, positional[1])
		}
		cfg.listKinds = true
		return cfg, nil
	}
	if cfg.kind, err = parseKind(positional[0]); err != nil {
		return cfg, err
	}
	cfg.ids = positional[1:]
	cfg.send.follow = cfg.follow
	switch {
	case cfg.send.timeout <= 0:
		return cfg, errors.New("--timeout must be positive")
	case cfg.send.followTimeout <= 0:
		return cfg, errors.New("--follow-timeout must be positive")
	case cfg.send.concurrency < 1:
		return cfg, errors.New("--concurrency must be at least 1")
	case cfg.progress != "auto" && cfg.progress != "always" && cfg.progress != "never":
		return cfg, fmt.Errorf("--progress %q is not auto, always or never", cfg.progress)
	}
	return cfg, nil
}

// parseInterspersed parses flags wherever they appear among the positional
// arguments, up to a "--".
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}
