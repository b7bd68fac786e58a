// Command cckm-cancel asks the cancellation worker to cancel CipherTrust
// Manager CCKM jobs and waits for its answers: the producer side of the
// request and result subjects, for incident response.
//
//	cckm-cancel [flags] KIND [id...]
//	cckm-cancel kinds [--json]
//	cckm-cancel dead ls [--json]
//	cckm-cancel dead retry [flags] --all | REQUEST_ID...
//	cckm-cancel help | --help | --version
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
// {"id": ..., "request_id": ...} (plus "follow": true with --follow), where
// request_id is --request-prefix (default eight random hexadecimal digits
// and a dash, new for each run) followed by the id's position, with
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
// queued and will still be carried out, and a line on standard error says
// how to watch for its result, as after an interrupt), unsent (no responders, duplicate
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
// "cckm-cancel dead ls" lists the dead letters of the stream
// CCKM_CANCEL_DEAD (the requests the worker gave up on) without changing
// them; "cckm-cancel dead retry" sends each chosen one again as a new
// request, {"id": ..., "request_id": <new>, "retry_of": <old>} (and the
// old "follow"), at most once for two runs at once, waits for
// the results like any run, and deletes a dead letter only once its
// retry's result is stored in the results stream.
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

	"github.com/cckm/cckm-cancel-worker/internal/buildinfo"
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
	cfg, err := parseArgs(args)
	if err != nil {
		return usageError(stderr, err)
	}
	switch cfg.command {
	case commandHelp:
		writeUsage(stdout)
		return exitCanceled
	case commandVersion:
		fmt.Fprintln(stdout, buildinfo.String(commandName))
		return exitCanceled
	case commandKinds:
		printKinds(stdout, cfg.json)
		return exitCanceled
	case commandDeadList, commandDeadRetry:
		return runDead(ctx, cfg, env, stdout, stderr)
	}
	ids, err := collectIDs(cfg.ids, cfg.file, stdin, stderr)
	if err != nil {
		return usageError(stderr, err)
	}
	requests, err := newRequests(cfg.kind, ids, cfg.requestPrefix)
	if err != nil {
		return usageError(stderr, err)
	}
	conn, err := dial(cfg, env)
	if err != nil {
		return usageError(stderr, err)
	}
	defer conn.nc.Close()
	_, ok, err := sendRequests(ctx, conn, cfg, requests, stdout, stderr)
	if err != nil {
		return usageError(stderr, err)
	}
	if !ok {
		return exitNotCanceled
	}
	return exitCanceled
}

// usageError prints err as the one line of a usage (or connection) error
// and returns its exit status.
func usageError(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", commandName, err)
	return exitUsage
}

// dial connects to NATS as the flags, the environment and the context say.
func dial(cfg config, env func(string) string) (*connection, error) {
	settings, err := resolveConnection(cfg.conn, env)
	if err != nil {
		return nil, err
	}
	return connect(settings)
}

// sendRequests sends requests, waits for their answers, and reports them
// as the flags say: the table or JSON lines, the progress line, and, when
// any stays queued unanswered, how to watch for it. It returns the
// outcomes and whether every request ended as hoped.
func sendRequests(ctx context.Context, conn *connection, cfg config, requests []request, stdout, stderr io.Writer) ([]outcome, bool, error) {
	progress := showProgress(cfg.progress, isTerminal(stderr))
	report := newReporter(stdout, stderr, cfg.json, cfg.follow, progress, len(requests))
	s, err := newSender(ctx, conn, requests, cfg.send, report, stderr)
	if err != nil {
		return nil, false, err
	}
	report.start()
	outcomes := s.sendAll(ctx)
	s.close()
	ok := report.finish(outcomes)
	if line := queuedLine(outcomes); line != "" {
		fmt.Fprintln(stderr, line)
	}
	return outcomes, ok, nil
}

// command is what the command line asks for.
type command int

// The commands.
const (
	commandSend      command = iota // cancel jobs: KIND id...
	commandHelp                     // help, -h, --help
	commandVersion                  // --version
	commandKinds                    // kinds
	commandDeadList                 // dead ls
	commandDeadRetry                // dead retry
)

// Subcommand names. No kind of the kinds table may be named as one (a test
// checks).
const (
	helpCommand  = "help"
	deadCommand  = "dead"
	deadList     = "ls"
	deadRetry    = "retry"
	deadCommands = deadList + " or " + deadRetry
)

// config is everything the command line says.
type config struct {
	command       command
	kind          messages.Kind
	ids           []string // job ids; with dead retry, request ids
	all           bool     // dead retry --all
	version       bool
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

// usageText is what --help prints before the flags; its kinds come from
// the kinds table.
func usageText() string {
	return `Usage: cckm-cancel [flags] KIND [id...]
       cckm-cancel kinds [--json]
       cckm-cancel dead ls [--json]
       cckm-cancel dead retry [flags] --all | REQUEST_ID...
       cckm-cancel help | --help | --version

Asks the cancellation worker to cancel CipherTrust Manager jobs of one KIND and
waits for each result. Ids come from the arguments, --file, or standard input.
"cckm-cancel kinds" lists the kinds with their subjects. "dead ls" lists the
requests the worker gave up on (the dead letters); "dead retry" sends them again
as new requests and removes each dead letter once its retry has a stored result.
Exit status: 0 all canceled, 1 any not canceled, 2 usage or connection error.

Kinds:
` + kindsUsage() + `
Flags:
`
}

// writeUsage writes the usage text and every flag, in the double-dash form.
func writeUsage(w io.Writer) {
	var cfg config
	fs := newFlagSet(&cfg)
	fmt.Fprint(w, usageText())
	writeFlags(w, fs)
}

// shortFlags maps a one-letter flag to the flag it is short for.
var shortFlags = map[string]string{"s": "server"}

// writeFlags lists the flags of fs as "  -s, --server URLS" with the usage
// indented below, and the default where it is not the zero value.
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	short := map[string]string{}
	for letter, long := range shortFlags {
		short[long] = letter
	}
	fs.VisitAll(func(f *flag.Flag) {
		if _, isShort := shortFlags[f.Name]; isShort {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if letter, ok := short[f.Name]; ok {
			line = "  -" + letter + ", --" + f.Name
		}
		if name != "" {
			line += " " + name
		}
		switch f.DefValue {
		case "", "0", "false", "0s":
		default:
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n    \t%s\n", line, usage)
	})
}

// newFlagSet defines every flag on cfg.
func newFlagSet(cfg *config) *flag.FlagSet {
	fs := flag.NewFlagSet(commandName, flag.ContinueOnError)
	// A usage error is one line, printed by the caller; --help prints the
	// usage on standard output.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c := &cfg.conn
	fs.StringVar(&c.URL, "server", "", "NATS server `URLS`, comma-separated (env NATS_URL; default "+defaultURL+")")
	fs.StringVar(&c.URL, "s", "", "short for --server")
	fs.StringVar(&c.Creds, "creds", "", "NATS credentials `FILE` (env NATS_CREDS)")
	fs.StringVar(&c.NKey, "nkey", "", "NATS NKey seed `FILE` (env NATS_NKEY)")
	fs.StringVar(&c.User, "user", "", "NATS `USER` (env NATS_USER)")
	fs.StringVar(&c.Password, "password", "", "NATS `PASSWORD` (env NATS_PASSWORD); ps shows it: prefer --password-file or the environment")
	fs.StringVar(&c.PasswordFile, "password-file", "", "read the NATS password from `FILE`, white space trimmed (env NATS_PASSWORD_FILE)")
	fs.StringVar(&c.Token, "token", "", "NATS `TOKEN` (env NATS_TOKEN); ps shows it: prefer --token-file or the environment")
	fs.StringVar(&c.TokenFile, "token-file", "", "read the NATS token from `FILE`, white space trimmed (env NATS_TOKEN_FILE)")
	fs.StringVar(&c.CA, "tlsca", "", "CA bundle `FILE` for the NATS server's certificate (env NATS_CA or NATS_CA_FILE)")
	fs.StringVar(&c.Cert, "tlscert", "", "TLS client certificate `FILE` (env NATS_CERT or NATS_CERT_FILE)")
	fs.StringVar(&c.Key, "tlskey", "", "TLS client key `FILE` (env NATS_KEY or NATS_KEY_FILE)")
	fs.StringVar(&c.Context, "context", "", "nats CLI context to connect with (env NATS_CONTEXT; default the selected one)")
	fs.StringVar(&cfg.file, "file", "", "read ids from `FILE`, one per line (- for standard input)")
	fs.DurationVar(&cfg.send.timeout, "timeout", defaultTimeout, "how long to wait for each request's result")
	fs.DurationVar(&cfg.send.followTimeout, "follow-timeout", defaultFollowTimeout, "with --follow, how long to wait for each settled event after the result")
	fs.BoolVar(&cfg.follow, "follow", false, "ask the worker to follow each job to its end and wait for the settled events")
	fs.BoolVar(&cfg.json, "json", false, "print JSON lines, each result as received (with kinds, each kind; with dead ls, each dead letter), instead of a table")
	fs.StringVar(&cfg.requestPrefix, "request-prefix", "", "request_id = `PREFIX` + 1, 2, ... (default random hexadecimal digits and a dash, new for each run)")
	fs.IntVar(&cfg.send.concurrency, "concurrency", defaultConcurrency, "requests awaiting their result at once")
	fs.StringVar(&cfg.progress, "progress", "auto", "progress line on standard error: auto (when it is a terminal and the run waits over a second), always, never")
	fs.BoolVar(&cfg.all, "all", false, "with dead retry: retry every dead letter")
	fs.BoolVar(&cfg.version, "version", false, "print the version and exit")
	return fs
}

// parseArgs reads the command line. Flags may come before or after the
// kind and the ids.
func parseArgs(args []string) (config, error) {
	var cfg config
	fs := newFlagSet(&cfg)
	positional, err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		cfg.command = commandHelp
		return cfg, nil
	case err != nil:
		return cfg, err
	case cfg.version:
		cfg.command = commandVersion
		return cfg, nil
	case len(positional) == 0:
		return cfg, fmt.Errorf("missing the kind of job (%s %s lists them; --help for help)", commandName, kindsCommand)
	}
	switch positional[0] {
	case helpCommand:
		cfg.command = commandHelp
		return cfg, nil
	case kindsCommand:
		if len(positional) > 1 {
			return cfg, fmt.Errorf("%s takes no arguments, got %q", kindsCommand, positional[1])
		}
		cfg.command = commandKinds
		return cfg, nil
	case deadCommand:
		return parseDead(cfg, positional[1:])
	}
	if cfg.all {
		return cfg, errors.New("--all is for dead retry")
	}
	if cfg.kind, err = parseKind(positional[0]); err != nil {
		return cfg, err
	}
	cfg.ids = positional[1:]
	cfg.send.follow = cfg.follow
	return cfg, checkSendFlags(cfg)
}

// parseDead reads what follows "dead": ls, or retry with --all or request
// ids.
func parseDead(cfg config, args []string) (config, error) {
	if len(args) == 0 {
		return cfg, fmt.Errorf("%s wants %s", deadCommand, deadCommands)
	}
	switch args[0] {
	case deadList:
		if len(args) > 1 {
			return cfg, fmt.Errorf("%s %s takes no arguments, got %q", deadCommand, deadList, args[1])
		}
		if cfg.all {
			return cfg, fmt.Errorf("--all is for %s %s", deadCommand, deadRetry)
		}
		cfg.command = commandDeadList
		return cfg, nil
	case deadRetry:
		cfg.command = commandDeadRetry
		cfg.ids = args[1:]
		switch {
		case cfg.all && len(cfg.ids) > 0:
			return cfg, fmt.Errorf("%s %s takes --all or request ids, not both", deadCommand, deadRetry)
		case !cfg.all && len(cfg.ids) == 0:
			return cfg, fmt.Errorf("%s %s wants --all or the request ids of the dead letters (%s %s %s lists them)",
				deadCommand, deadRetry, commandName, deadCommand, deadList)
		case cfg.follow:
			return cfg, fmt.Errorf("--follow is not for %s %s", deadCommand, deadRetry)
		}
		return cfg, checkSendFlags(cfg)
	default:
		return cfg, fmt.Errorf("%s wants %s, got %q", deadCommand, deadCommands, args[0])
	}
}

// checkSendFlags checks the flags of a run that sends requests.
func checkSendFlags(cfg config) error {
	switch {
	case cfg.send.timeout <= 0:
		return errors.New("--timeout must be positive")
	case cfg.send.followTimeout <= 0:
		return errors.New("--follow-timeout must be positive")
	case cfg.send.concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case cfg.progress != "auto" && cfg.progress != "always" && cfg.progress != "never":
		return fmt.Errorf("--progress %q is not auto, always or never", cfg.progress)
	}
	return nil
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
