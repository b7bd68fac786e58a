package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"unicode"

	"github.com/mattn/go-isatty"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// progressThreshold is how many ids it takes for the progress line in
// --progress=auto.
const progressThreshold = 10

// reporter prints what becomes of the requests: JSON lines as they come
// (with --json) or a table at the end, a progress line on stderr, and a
// summary line on stderr when any request did not end as hoped.
type reporter struct {
	mu       sync.Mutex
	stdout   io.Writer
	stderr   io.Writer
	json     bool
	follow   bool
	progress bool
	total    int
	// Counters for the progress line.
	answered, canceled, settledTrue int
}

func newReporter(stdout, stderr io.Writer, jsonLines, follow, progress bool, total int) *reporter {
	return &reporter{stdout: stdout, stderr: stderr, json: jsonLines, follow: follow, progress: progress, total: total}
}

// showProgress decides whether to draw the progress line.
func showProgress(mode string, stderr io.Writer, total int) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	default:
		return total > progressThreshold && isTerminal(stderr)
	}
}

// isTerminal reports whether f is a terminal (or a Cygwin/MSYS one).
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	return isatty.IsTerminal(file.Fd()) || isatty.IsCygwinTerminal(file.Fd())
}

// result is told a request's result.
func (r *reporter) result(o *outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answered++
	if o.result.Status == messages.StatusCanceled {
		r.canceled++
	}
	r.printLine(o.raw, o.result)
}

// settled is told a followed request's settled event.
func (r *reporter) settled(o *outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o.ok(true) {
		r.settledTrue++
	}
	r.printLine(o.settledRaw, o.settled)
}

// printLine prints one JSON line (with --json) and redraws the progress
// line. Call with r.mu held.
func (r *reporter) printLine(raw []byte, made messages.Result) {
	if r.json {
		r.clearProgress()
		if raw == nil {
			raw = madeUpLine(made)
		}
		fmt.Fprintf(r.stdout, "%s\n", raw)
	}
	r.drawProgress()
}

func (r *reporter) drawProgress() {
	if !r.progress {
		return
	}
	line := fmt.Sprintf("cckm-cancel: %d/%d answered, %d canceled, %d not", r.answered, r.total, r.canceled, r.answered-r.canceled)
	if r.follow {
		line += fmt.Sprintf(", %d settled", r.settledTrue)
	}
	fmt.Fprintf(r.stderr, "\r\033[K%s", line)
}

func (r *reporter) clearProgress() {
	if r.progress {
		fmt.Fprint(r.stderr, "\r\033[K")
	}
}

// madeUpLine is the JSON line of an outcome decided here: the result's
// shape, without the fields that only the worker can fill.
func madeUpLine(result messages.Result) []byte {
	line, _ := json.Marshal(struct {
		RequestID string          `json:"request_id"`
		Kind      messages.Kind   `json:"kind"`
		ID        string          `json:"id"`
		Status    messages.Status `json:"status"`
		Error     *messages.Error `json:"error,omitempty"`
		Settled   *bool           `json:"settled,omitempty"`
	}{result.RequestID, result.Kind, result.ID, result.Status, result.Error, result.Settled})
	return line
}

// finish ends the progress line, prints the table (unless --json) and a
// summary on stderr when any request did not end as hoped, and reports
// whether all did.
func (r *reporter) finish(outcomes []outcome) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clearProgress()
	if !r.json {
		r.printTable(outcomes)
	}
	failed := 0
	for i := range outcomes {
		if !outcomes[i].ok(r.follow) {
			failed++
		}
	}
	if failed > 0 {
		hoped := "canceled"
		if r.follow {
			hoped = "canceled and settled"
		}
		fmt.Fprintf(r.stderr, "cckm-cancel: %d of %d requests did not end %s\n", failed, len(outcomes), hoped)
	}
	return failed == 0
}

// printTable prints one row per request, in the order given. With follow,
// OVERALL_STATUS is the settled event's (the job's final status).
func (r *reporter) printTable(outcomes []outcome) {
	tw := tabwriter.NewWriter(r.stdout, 0, 4, 2, ' ', 0)
	header := "REQUEST_ID\tKIND\tID\tSTATUS\tHTTP\tOVERALL_STATUS\tERROR"
	if r.follow {
		header += "\tSETTLED"
	}
	fmt.Fprintln(tw, header)
	for i := range outcomes {
		o := &outcomes[i]
		last := o.result
		if o.followed {
			last = o.settled
		}
		http := "-"
		if o.raw != nil {
			http = strconv.Itoa(o.result.HTTPStatus)
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", o.requestID, o.kind, o.id, o.result.Status, http,
			orDash(first(last.OverallStatus, o.result.OverallStatus)), orDash(errorText(firstError(last.Error, o.result.Error))))
		if r.follow {
			row += "\t" + settledText(o)
		}
		fmt.Fprintln(tw, row)
	}
	_ = tw.Flush()
}

// settledText is the SETTLED column: true, false (the worker gave up),
// timeout or interrupted (this command gave up), or - (not followed).
func settledText(o *outcome) string {
	switch {
	case !o.followed:
		return "-"
	case o.settledRaw == nil:
		return string(o.settled.Status)
	default:
		return strconv.FormatBool(o.settled.Settled != nil && *o.settled.Settled)
	}
}

// errorText is the ERROR column: "code: message", on one line.
func errorText(e *messages.Error) string {
	if e == nil {
		return ""
	}
	text := string(e.Code)
	if e.Message != "" {
		text += ": " + e.Message
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, text)
}

// firstError returns a unless it is nil, else b.
func firstError(a, b *messages.Error) *messages.Error {
	if a != nil {
		return a
	}
	return b
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
