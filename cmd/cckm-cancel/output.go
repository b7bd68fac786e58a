package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Timing of the progress line.
const (
	// progressDelay: with --progress=auto the line is drawn once the run
	// has waited this long; a run that is over sooner shows nothing to
	// clear.
	progressDelay = time.Second
	// progressTick is how often the line is drawn again while nothing
	// comes, so that its waiting time moves.
	progressTick = time.Second
)

// reporter prints what becomes of the requests: JSON lines as they come
// (with --json) or a table at the end, a progress line on stderr, and a
// summary line on stderr when any request did not end as hoped.
type reporter struct {
	mu       sync.Mutex
	stdout   io.Writer
	stderr   io.Writer
	json     bool
	follow   bool
	progress progressPlan
	total    int
	// now is the clock; started is when the wait began.
	now     func() time.Time
	started time.Time
	// stopTick ends the goroutine that redraws the progress line; ticked
	// is closed when it has.
	stopTick, ticked chan struct{}
	// Counters for the progress line.
	answered, canceled, settledTrue int
	// drawn is set while a progress line is on stderr.
	drawn bool
}

func newReporter(stdout, stderr io.Writer, jsonLines, follow bool, progress progressPlan, total int) *reporter {
	return &reporter{stdout: stdout, stderr: stderr, json: jsonLines, follow: follow, progress: progress, total: total, now: time.Now}
}

// progressPlan says whether the progress line is drawn, and after how
// long a wait.
type progressPlan struct {
	show  bool
	after time.Duration
}

// showProgress decides whether to draw the progress line: always (from the
// start), never, or with auto when stderr is a terminal and the run has
// waited progressDelay. On anything but a terminal auto draws nothing.
func showProgress(mode string, terminal bool) progressPlan {
	switch mode {
	case "always":
		return progressPlan{show: true}
	case "never":
		return progressPlan{}
	default:
		return progressPlan{show: terminal, after: progressDelay}
	}
}

// start notes when the wait began and, when the progress line is drawn,
// redraws it every progressTick until finish.
func (r *reporter) start() {
	r.mu.Lock()
	r.started = r.now()
	r.drawProgress()
	r.mu.Unlock()
	if !r.progress.show {
		return
	}
	r.stopTick, r.ticked = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.ticked)
		ticker := time.NewTicker(progressTick)
		defer ticker.Stop()
		for {
			select {
			case <-ticker.C:
				r.mu.Lock()
				r.drawProgress()
				r.mu.Unlock()
			case <-r.stopTick:
				return
			}
		}
	}()
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

// drawProgress draws the progress line over the last one, once the run
// has waited as long as the plan says. Call with r.mu held.
func (r *reporter) drawProgress() {
	if !r.progress.show || r.started.IsZero() {
		return
	}
	waited := r.now().Sub(r.started)
	if waited < r.progress.after {
		return
	}
	fmt.Fprintf(r.stderr, "\r\033[K%s", r.progressLine(waited))
	r.drawn = true
}

// progressLine is the text of the progress line.
func (r *reporter) progressLine(waited time.Duration) string {
	line := fmt.Sprintf("cckm-cancel: %d/%d answered, %d canceled, %d not", r.answered, r.total, r.canceled, r.answered-r.canceled)
	if r.follow {
		line += fmt.Sprintf(", %d settled", r.settledTrue)
	}
	return line + fmt.Sprintf(" (waiting %s)", waited.Truncate(time.Second))
}

// clearProgress erases the progress line, if one is drawn. Call with r.mu
// held.
func (r *reporter) clearProgress() {
	if r.drawn {
		fmt.Fprint(r.stderr, "\r\033[K")
		r.drawn = false
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
	if r.stopTick != nil {
		close(r.stopTick)
		<-r.ticked
	}
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

// printTable prints one row per request, in the order given, in at most
// tableWidth columns: the request id cut short, KIND only when the run has
// more than one, OVERALL only when any job has one, and the error (the
// widest) last and cut. With follow, OVERALL is the settled event's (the
// job's final status).
func (r *reporter) printTable(outcomes []outcome) {
	kinds := map[messages.Kind]bool{}
	anyOverall := false
	for i := range outcomes {
		o := &outcomes[i]
		kinds[o.kind] = true
		anyOverall = anyOverall || overallText(o) != "-"
	}
	columns := []column{{"REQUEST_ID", requestIDColumn, requestIDMin}}
	if len(kinds) > 1 {
		columns = append(columns, column{"KIND", kindColumn, kindMin})
	}
	columns = append(columns, column{"ID", jobIDColumn, 0}, column{"STATUS", wordColumn, 0}, column{"HTTP", 0, 0})
	if anyOverall {
		columns = append(columns, column{"OVERALL", wordColumn, overallMin})
	}
	if r.follow {
		columns = append(columns, column{"SETTLED", wordColumn, 0})
	}
	columns = append(columns, column{"ERROR", 0, 0})
	rows := make([][]string, 0, len(outcomes))
	for i := range outcomes {
		o := &outcomes[i]
		row := []string{o.requestID}
		if len(kinds) > 1 {
			row = append(row, string(o.kind))
		}
		row = append(row, o.id, string(o.result.Status), httpText(o))
		if anyOverall {
			row = append(row, overallText(o))
		}
		if r.follow {
			row = append(row, settledText(o))
		}
		last := o.result
		if o.followed {
			last = o.settled
		}
		rows = append(rows, append(row, orDash(errorText(firstError(last.Error, o.result.Error)))))
	}
	writeTable(r.stdout, columns, rows)
}

// overallText is the OVERALL column: the job's overall status, from the
// settled event when the job was followed, or -.
func overallText(o *outcome) string {
	if o.followed {
		return orDash(first(o.settled.OverallStatus, o.result.OverallStatus))
	}
	return orDash(o.result.OverallStatus)
}

// httpText is the HTTP column: the last HTTP status CipherTrust Manager
// answered, or - when there was no answer (or no result from the worker).
func httpText(o *outcome) string {
	if o.raw == nil || o.result.HTTPStatus == 0 {
		return "-"
	}
	return strconv.Itoa(o.result.HTTPStatus)
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
	return oneLine(text)
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
