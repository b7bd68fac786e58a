// Command cckm-fake-cm serves the simulated CipherTrust Manager of package
// cckmtest on its own, with the sample jobs and credentials of the worker's
// dev mode, so that the worker can run against it in another process or
// container (docker-compose.yml does this). It serves the cancel and the
// GET of every kind of CCKM job the worker knows, each at its collection.
//
// It serves plain HTTP on 0.0.0.0:8443 unless told otherwise; --tls serves
// HTTPS with httptest's self-signed certificate (valid for 127.0.0.1, ::1
// and example.com only) and prints the certificate to trust. It stops on
// SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// Defaults: the same user, password and settle time as the worker's dev
// mode (cmd/cckm-cancel-worker/dev.go).
const (
	defaultAddr        = "0.0.0.0:8443"
	defaultUsername    = cckmtest.SampleUsername
	defaultPassword    = cckmtest.SamplePassword
	defaultSettleAfter = cckmtest.SampleSettleAfter
)

// options are the command-line settings.
type options struct {
	addr        string
	tls         bool
	username    string
	password    string
	settleAfter time.Duration
	anyJob      bool
	quiet       bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintf(os.Stderr, "cckm-fake-cm: %v\n", err)
		os.Exit(2)
	}
}

// parseFlags reads the command line. It returns parse errors; only --help
// prints (the usage, to stderr).
func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("cckm-fake-cm", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the caller reports a parse error in one line
	var opts options
	fs.StringVar(&opts.addr, "addr", defaultAddr, "listen address (host:port; port 0 picks a free one)")
	fs.BoolVar(&opts.tls, "tls", false, "serve HTTPS with a self-signed certificate for 127.0.0.1, ::1 and example.com")
	fs.StringVar(&opts.username, "username", defaultUsername, "user the password grant accepts")
	fs.StringVar(&opts.password, "password", defaultPassword, "password the password grant accepts")
	fs.DurationVar(&opts.settleAfter, "settle-after", defaultSettleAfter, "how long a canceled job keeps running before it completes (negative: never)")
	fs.BoolVar(&opts.anyJob, "any-job", false, "answer any unknown job id that is a UUID as a running job")
	fs.BoolVar(&opts.quiet, "quiet", false, "do not log each request")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintf(stderr, "Usage of %s:\n", fs.Name())
			fs.PrintDefaults()
		}
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if opts.settleAfter == 0 {
		return options{}, errors.New("--settle-after must not be 0 (use a negative value for never)")
	}
	return opts, nil
}

// run serves the fake until ctx ends. It calls started, when not nil, with
// the base URL once the server listens. A bad command line returns the
// parse error (flag.ErrHelp for --help).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, started func(baseURL string)) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	stdout = &lockedWriter{w: stdout} // request lines come from concurrent handlers
	cmOpts := cckmtest.Options{
		TLS:         opts.tls,
		Addr:        opts.addr,
		Username:    opts.username,
		Password:    opts.password,
		SettleAfter: opts.settleAfter,
		AnyJob:      opts.anyJob,
		NoRecord:    true, // a long-running process must not grow its call record
	}
	if !opts.quiet {
		cmOpts.Logf = func(format string, args ...any) { fmt.Fprintf(stdout, format+"\n", args...) }
	}
	cm, err := newServer(cmOpts)
	if err != nil {
		return err
	}
	defer cm.Close()
	cm.AddSampleJobs()
	printBanner(stdout, cm, opts)
	if started != nil {
		started(cm.URL())
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "cckm-fake-cm: stopping")
	return nil
}

// newServer starts the fake, turning cckmtest's panic on a listen failure
// into an error.
func newServer(opts cckmtest.Options) (cm *cckmtest.Server, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("--addr %s: %v", opts.Addr, p)
		}
	}()
	return cckmtest.NewServer(opts), nil
}

// printBanner prints where the fake listens, the credentials and the jobs.
func printBanner(out io.Writer, cm *cckmtest.Server, opts options) {
	p := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	p("cckm-fake-cm: simulated CipherTrust Manager on %s (listening on %s)", cm.URL(), opts.addr)
	password := "****" // a password of the operator's own is not printed
	if opts.password == cckmtest.SamplePassword {
		password = opts.password
	}
	p("  password grant: user %q, password %q", opts.username, password)
	p("  every kind of job, at its collection:")
	for _, line := range wrapWords(kindNames(), bannerWidth) {
		p("    %s", line)
	}
	if opts.anyJob {
		p("  any other job id that is a UUID is answered as a running job")
	}
	settle := fmt.Sprintf("running jobs finish %s after a cancel", opts.settleAfter)
	if opts.settleAfter < 0 {
		settle = "canceled jobs never finish"
	}
	p("Sample jobs (%s):", settle)
	width := 0
	for _, job := range cckmtest.SampleJobs {
		width = max(width, len(job.Kind))
	}
	for _, job := range cckmtest.SampleJobs {
		p("  %-*s %s  %s", width, job.Kind, job.ID, job.State())
	}
	if pem := cm.CACertPEM(); pem != nil {
		p("TLS certificate to trust (CCKM_CA_FILE):")
		_, _ = out.Write(pem)
	}
}

// bannerWidth is the width the list of kinds is wrapped to, for a terminal
// of 100 columns.
const bannerWidth = 94

// wrapWords joins words with spaces into lines of at most width bytes (a
// longer word gets a line of its own).
func wrapWords(words []string, width int) []string {
	var lines []string
	line := ""
	for _, word := range words {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) > width:
			lines = append(lines, line)
			line = word
		default:
			line += " " + word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// kindNames returns every kind's name, in the kinds table's order.
func kindNames() []string {
	names := make([]string, len(messages.Kinds))
	for i, kind := range messages.Kinds {
		names[i] = string(kind)
	}
	return names
}

// lockedWriter serialises writes from concurrent request handlers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
