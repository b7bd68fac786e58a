package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// retryDeadLetters sends the chosen dead letters again, each as a new
// request (a new request_id, with retry_of naming the old one) to its
// original subject, waits for the results like any run, and then deletes
// each dead letter whose retry has a stored result, whatever its status: a
// retry that failed is dead-lettered again under its new request id.
func retryDeadLetters(ctx context.Context, conn *connection, cfg config, letters []deadLetter, stdout, stderr io.Writer) int {
	chosen, err := chooseDeadLetters(letters, cfg.ids, cfg.all, stderr)
	if err != nil {
		return usageError(stderr, err)
	}
	skipped := 0
	var retries []deadLetter
	for _, d := range chosen {
		if !d.retryable {
			fmt.Fprintf(stderr, "%s: dead letter %s (sequence %d) cannot be sent again: %s; it is kept\n",
				commandName, d.RequestID, d.Sequence, unretryableReason(d))
			skipped++
			continue
		}
		retries = append(retries, d)
	}
	if len(retries) == 0 {
		if skipped > 0 {
			return exitNotCanceled
		}
		fmt.Fprintf(stderr, "%s: no dead letters in %s\n", commandName, deadLetterStream)
		return exitCanceled
	}
	prefix := cfg.requestPrefix
	if prefix == "" {
		prefix = newRunPrefix()
	}
	requests := make([]request, len(retries))
	for i, d := range retries {
		requestID := prefix + strconv.Itoa(i+1)
		if !messages.ValidRequestID(requestID) {
			return usageError(stderr, fmt.Errorf("--request-prefix %q does not make a valid request_id", prefix))
		}
		requests[i] = request{index: i, kind: d.Kind, id: d.ID, requestID: requestID, retryOf: d.RequestID, deadSequence: d.Sequence,
			msgID: retryMsgID(d), follow: d.Follow}
	}
	results, err := newResultWatch(ctx, conn.js, requests)
	if err != nil {
		return usageError(stderr, err)
	}
	outcomes, ok, err := sendRequests(ctx, conn, cfg, requests, stdout, stderr)
	if err != nil {
		return usageError(stderr, err)
	}
	removeAnswered(context.WithoutCancel(ctx), conn.js, outcomes, results, stderr)
	if !ok || skipped > 0 {
		return exitNotCanceled
	}
	return exitCanceled
}

// retryMsgID is the Nats-Msg-Id of a retry: the same for every run that
// retries the dead letter, so that of two runs at once (two operators, two
// terminals) the request stream takes one retry within its duplicate
// window. The time it was stored tells a dead letter from one that had
// its sequence in a stream since deleted and made again.
func retryMsgID(d deadLetter) string {
	return fmt.Sprintf("%s.%d.%d.retry", deadLetterStream, d.Sequence, d.StoredAt.UnixNano())
}

// unretryableReason says why a dead letter cannot be sent again.
func unretryableReason(d deadLetter) string {
	switch {
	case d.PayloadOmitted:
		return "the worker could store it only without its payload"
	case !d.Kind.Valid():
		return fmt.Sprintf("%q is no kind of job", d.Kind)
	default:
		return "its payload names no valid job id"
	}
}

// chooseDeadLetters picks the dead letters to retry: all, or those named
// by request id. A name is a request id, or the start of exactly one
// (as the table shows a cut one, with or without its "…"). A name that
// matches none, or the start of several, is an error, and nothing is sent.
func chooseDeadLetters(letters []deadLetter, names []string, all bool, stderr io.Writer) ([]deadLetter, error) {
	if all {
		return letters, nil
	}
	var chosen []deadLetter
	taken := map[uint64]bool{}
	bad := 0
	for _, name := range names {
		matches := matchDeadLetters(letters, name)
		switch {
		case len(matches) == 0:
			fmt.Fprintf(stderr, "%s: no dead letter has request id %q (%s %s %s lists them)\n", commandName, name, commandName, deadCommand, deadList)
			bad++
		case len(matches) > 1 && !allSameRequestID(matches):
			fmt.Fprintf(stderr, "%s: %q starts %d request ids of dead letters; give more of it\n", commandName, name, len(matches))
			bad++
		}
		for _, d := range matches {
			if !taken[d.Sequence] {
				taken[d.Sequence] = true
				chosen = append(chosen, d)
			}
		}
	}
	if bad > 0 {
		return nil, fmt.Errorf("%d of %d request ids name no one dead letter; nothing was sent", bad, len(names))
	}
	return chosen, nil
}

// matchDeadLetters returns the dead letters whose request id is name, or
// else those it starts (a trailing "…" dropped).
func matchDeadLetters(letters []deadLetter, name string) []deadLetter {
	var exact, starts []deadLetter
	start := strings.TrimSuffix(name, ellipsis)
	for _, d := range letters {
		switch {
		case d.RequestID == name:
			exact = append(exact, d)
		case start != "" && strings.HasPrefix(d.RequestID, start):
			starts = append(starts, d)
		}
	}
	if len(exact) > 0 {
		return exact
	}
	return starts
}

// allSameRequestID reports whether the dead letters share one request id
// (one request dead-lettered twice).
func allSameRequestID(letters []deadLetter) bool {
	return !slices.ContainsFunc(letters, func(d deadLetter) bool { return d.RequestID != letters[0].RequestID })
}

// resultWatch finds the stored results of the retries: it notes where the
// results stream ends before they are sent, and reads it from there after.
type resultWatch struct {
	stream jetstream.Stream // nil when no stream stores the results
	from   uint64
	cfg    jetstream.OrderedConsumerConfig
}

// newResultWatch notes the end of the stream that stores the results of
// the requests' kinds.
func newResultWatch(ctx context.Context, js jetstream.JetStream, requests []request) (*resultWatch, error) {
	var subjects []string
	for _, req := range requests {
		if !slices.Contains(subjects, req.kind.ResultSubject()) {
			subjects = append(subjects, req.kind.ResultSubject())
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, streamCallTimeout)
	defer cancel()
	name, err := js.StreamNameBySubject(callCtx, subjects[0])
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return &resultWatch{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up the stream of %s: %w", subjects[0], err)
	}
	stream, err := js.Stream(callCtx, name)
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", name, err)
	}
	return &resultWatch{
		stream: stream,
		from:   stream.CachedInfo().State.LastSeq + 1,
		cfg: jetstream.OrderedConsumerConfig{
			FilterSubjects: subjects,
		},
	}, nil
}

// storedRequestIDs returns the request ids of the results stored since the
// watch began.
func (w *resultWatch) storedRequestIDs(ctx context.Context) (map[string]bool, error) {
	stored := map[string]bool{}
	if w.stream == nil {
		return stored, nil
	}
	var last uint64
	for _, subject := range w.cfg.FilterSubjects {
		callCtx, cancel := context.WithTimeout(ctx, streamCallTimeout)
		msg, err := w.stream.GetLastMsgForSubject(callCtx, subject)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return nil, err
		default:
			last = max(last, msg.Sequence)
		}
	}
	if last < w.from {
		return stored, nil
	}
	cfg := w.cfg
	cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	cfg.OptStartSeq = w.from
	err := readStream(ctx, w.stream, cfg, last, func(msg jetstream.Msg, _ *jetstream.MsgMetadata) {
		var result struct {
			RequestID string `json:"request_id"`
		}
		if json.Unmarshal(msg.Data(), &result) == nil {
			stored[result.RequestID] = true
		}
	})
	return stored, err
}

// removeAnswered deletes the dead letter of every retry that has a stored
// result and says how many were removed and kept.
func removeAnswered(ctx context.Context, js jetstream.JetStream, outcomes []outcome, results *resultWatch, stderr io.Writer) {
	stored, err := results.storedRequestIDs(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot read the stored results (%v); every dead letter is kept\n", commandName, err)
		return
	}
	lookupCtx, cancel := context.WithTimeout(ctx, streamCallTimeout)
	dead, err := js.Stream(lookupCtx, deadLetterStream)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot look up stream %s (%v); every dead letter is kept\n", commandName, deadLetterStream, err)
		return
	}
	removed, kept, elsewhere := 0, 0, 0
	for i := range outcomes {
		o := &outcomes[i]
		switch {
		case o.raw == nil && o.result.Error != nil && o.result.Error.Code == codeDuplicate:
			elsewhere++ // another run sent its retry and removes it
			continue
		case !stored[o.requestID]:
			kept++
			continue
		}
		// Each delete has its own bound: one shared by all would run out
		// part-way through a long --all, keeping dead letters already
		// answered, which the next retry would send again.
		deleteCtx, cancel := context.WithTimeout(ctx, streamCallTimeout)
		err := deleteDeadLetter(deleteCtx, dead, o.deadSequence)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "%s: cannot remove dead letter %s (sequence %d): %v\n", commandName, o.retryOf, o.deadSequence, err)
			kept++
			continue
		}
		removed++
	}
	line := fmt.Sprintf("%s: %d of %d dead letters removed (their retry has a stored result)", commandName, removed, len(outcomes))
	if kept > 0 {
		line += fmt.Sprintf("; %d kept (no stored result for their retry yet)", kept)
	}
	if elsewhere > 0 {
		line += fmt.Sprintf("; %d left to the run that retried them at the same time", elsewhere)
	}
	fmt.Fprintln(stderr, line)
}

// deleteDeadLetter deletes the dead letter at sequence; one already gone
// (another run removed it) is no error. The server reports a missing
// message to a delete as a failed delete, so a failure is checked by
// looking the message up.
func deleteDeadLetter(ctx context.Context, dead jetstream.Stream, sequence uint64) error {
	err := dead.DeleteMsg(ctx, sequence)
	if err == nil || errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if _, getErr := dead.GetMsg(ctx, sequence); errors.Is(getErr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return err
}
