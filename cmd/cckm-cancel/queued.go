package main

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// queuedLine is the line printed after a run that gave up waiting
// (--timeout, or an interrupt) while requests were queued in a stream: they
// stay there and the worker will still answer them, and the line says how
// to watch for their results. It is "" when no request was left so.
func queuedLine(outcomes []outcome) string {
	var (
		queued  []*outcome
		streams []string
		kinds   []messages.Kind
	)
	for i := range outcomes {
		o := &outcomes[i]
		if o.queuedIn == "" {
			continue
		}
		queued = append(queued, o)
		if !slices.Contains(streams, o.queuedIn) {
			streams = append(streams, o.queuedIn)
		}
		if !slices.Contains(kinds, o.kind) {
			kinds = append(kinds, o.kind)
		}
	}
	if len(queued) == 0 {
		return ""
	}
	subject := messages.SubjectResults
	if len(kinds) == 1 {
		subject = kinds[0].ResultSubject()
	}
	what := fmt.Sprintf("%d requests stay", len(queued))
	pattern := `"request_id":"` + queued[0].requestID + `"`
	if len(queued) == 1 {
		what = "1 request stays"
	} else {
		prefix := queued[0].requestID
		for _, o := range queued[1:] {
			prefix = commonPrefix(prefix, o.requestID)
		}
		pattern = `"request_id":"` + prefix
	}
	return fmt.Sprintf("%s: %s queued in stream %s and will still be answered; watch for the results with: nats sub %s | grep -F %s",
		commandName, what, strings.Join(streams, ", "), shellQuote(subject), shellQuote(pattern))
}

// commonPrefix is the longest start that a and b share, whole characters.
func commonPrefix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	for n > 0 && n < len(a) && !utf8.RuneStart(a[n]) {
		n--
	}
	return a[:n]
}

// shellQuote quotes s for a POSIX shell, in single quotes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
