package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// The dead-letter stream and the headers the worker puts on a dead letter,
// as the worker names them (a test checks they are the worker's).
const (
	deadLetterStream         = "CCKM_CANCEL_DEAD"
	headerDeadReason         = "Cckm-Dead-Reason"
	headerDeadCode           = "Cckm-Dead-Code"
	headerDeadDeliveries     = "Cckm-Dead-Deliveries"
	headerDeadAttempts       = "Cckm-Dead-Attempts"
	headerDeadRequestID      = "Cckm-Request-Id"
	headerOriginalSubject    = "Cckm-Original-Subject"
	headerDeadPayloadOmitted = "Cckm-Dead-Payload-Omitted"
)

// Bounds of reading a stream.
const (
	// fetchBatch is how many messages are asked for at once: few enough
	// that a batch of the largest requests (64 KiB) stays a few MiB.
	fetchBatch = 64
	// fetchWait is how long to wait for the next message the stream said
	// it has before asking the consumer whether any is left.
	fetchWait = 2 * time.Second
	// maxStalls is how many fetchWaits in a row may pass without a message
	// while the consumer still has some pending before reading fails
	// rather than return part of the stream.
	maxStalls = 5
	// streamCallTimeout bounds each JetStream API call (stream info,
	// message delete).
	streamCallTimeout = 5 * time.Second
)

// whenLayout is the WHEN_UTC column: month, day and minute, in UTC; dead
// letters are kept 30 days, so the year goes without saying.
const whenLayout = "Jan 02 15:04"

// unnamedPrefix starts the request id shown for a dead letter that carries
// no valid one, followed by its sequence.
const unnamedPrefix = "dead-"

// deadLetter is one message of the dead-letter stream: a request the
// worker gave up on.
type deadLetter struct {
	Sequence       uint64        `json:"sequence"`
	StoredAt       time.Time     `json:"stored_at"`
	Kind           messages.Kind `json:"kind"`
	ID             string        `json:"id"` // the job id; "" when the payload holds none
	RequestID      string        `json:"request_id"`
	Subject        string        `json:"subject"` // the request's original subject
	Code           string        `json:"code,omitempty"`
	Reason         string        `json:"reason,omitempty"`
	Deliveries     int           `json:"deliveries,omitempty"`
	Attempts       int           `json:"attempts,omitempty"`
	PayloadOmitted bool          `json:"payload_omitted,omitempty"`
	// RetryOf is the request id of the dead letter this one's request
	// retried, from its payload's retry_of.
	RetryOf string `json:"retry_of,omitempty"`
	// Follow is the request's own "follow": its retry asks for it too.
	Follow bool `json:"follow,omitempty"`
	// retryable says whether the dead letter can be sent again: its
	// payload is there and names a job id of a known kind.
	retryable bool
}

// why is the WHY column: the error code and the reason.
func (d *deadLetter) why() string {
	switch {
	case d.Code == "" && d.Reason == "":
		return "-"
	case d.Reason == "":
		return d.Code
	case d.Code == "":
		return d.Reason
	default:
		return d.Code + ": " + d.Reason
	}
}

// runDead runs dead ls or dead retry.
func runDead(ctx context.Context, cfg config, env func(string) string, stdout, stderr io.Writer) int {
	conn, err := dial(cfg, env)
	if err != nil {
		return usageError(stderr, err)
	}
	defer conn.nc.Close()
	letters, err := readDeadLetters(ctx, conn.js)
	if err != nil {
		return usageError(stderr, err)
	}
	if cfg.command == commandDeadList {
		if len(letters) == 0 {
			fmt.Fprintf(stderr, "%s: no dead letters in %s\n", commandName, deadLetterStream)
			return exitCanceled
		}
		printDeadLetters(stdout, letters, cfg.json)
		return exitCanceled
	}
	return retryDeadLetters(ctx, conn, cfg, letters, stdout, stderr)
}

// readDeadLetters reads every dead letter, oldest first, through an
// ordered consumer: an ephemeral one that changes nothing in the stream.
// No stream means no dead letters.
func readDeadLetters(ctx context.Context, js jetstream.JetStream) ([]deadLetter, error) {
	callCtx, cancel := context.WithTimeout(ctx, streamCallTimeout)
	defer cancel()
	stream, err := js.Stream(callCtx, deadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", deadLetterStream, err)
	}
	var letters []deadLetter
	state := stream.CachedInfo().State
	if state.Msgs == 0 {
		return nil, nil
	}
	err = readStream(ctx, stream, jetstream.OrderedConsumerConfig{}, state.LastSeq, func(msg jetstream.Msg, meta *jetstream.MsgMetadata) {
		letters = append(letters, parseDeadLetter(msg, meta))
	})
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", deadLetterStream, err)
	}
	return letters, nil
}

// readStream calls each with every message of stream that cfg selects, up
// to the one at sequence last, through an ordered consumer.
func readStream(ctx context.Context, stream jetstream.Stream, cfg jetstream.OrderedConsumerConfig, last uint64,
	each func(jetstream.Msg, *jetstream.MsgMetadata)) error {
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(fetchBatch))
	if err != nil {
		return err
	}
	defer it.Stop()
	stalls := 0
	for {
		waitCtx, cancel := context.WithTimeout(ctx, fetchWait)
		msg, err := it.Next(jetstream.NextContext(waitCtx))
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			// A slow server, or the rest deleted meanwhile: the consumer
			// says which.
			infoCtx, cancel := context.WithTimeout(ctx, streamCallTimeout)
			info, err := cons.Info(infoCtx)
			cancel()
			if err != nil {
				return err
			}
			if info.NumPending == 0 {
				return nil // what is left was deleted meanwhile
			}
			if stalls++; stalls >= maxStalls {
				return fmt.Errorf("nothing delivered for %s with %d messages left", time.Duration(stalls)*fetchWait, info.NumPending)
			}
			continue
		case err != nil:
			return err
		}
		stalls = 0
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		if meta.Sequence.Stream > last {
			return nil
		}
		each(msg, meta)
		if meta.Sequence.Stream == last {
			return nil
		}
	}
}

// parseDeadLetter reads a dead letter's headers and, from its payload, the
// job id.
func parseDeadLetter(msg jetstream.Msg, meta *jetstream.MsgMetadata) deadLetter {
	h := msg.Headers()
	d := deadLetter{
		Sequence:       meta.Sequence.Stream,
		StoredAt:       meta.Timestamp.UTC(),
		Kind:           messages.Kind(strings.TrimPrefix(msg.Subject(), messages.SubjectPrefix+"dead.")),
		RequestID:      h.Get(headerDeadRequestID),
		Subject:        h.Get(headerOriginalSubject),
		Code:           h.Get(headerDeadCode),
		Reason:         h.Get(headerDeadReason),
		PayloadOmitted: h.Get(headerDeadPayloadOmitted) == "true",
	}
	// Whoever may publish on the dead-letter subjects writes these headers:
	// a request id that is no valid one (control characters, escapes that
	// would reach the terminal raw) is replaced by one named for the
	// sequence, the same on every listing, so that dead retry can name it.
	fallbackID := d.RequestID
	if !messages.ValidRequestID(d.RequestID) {
		d.RequestID, fallbackID = "", unnamedPrefix+strconv.FormatUint(d.Sequence, 10)
	}
	d.Deliveries, _ = strconv.Atoi(h.Get(headerDeadDeliveries))
	d.Attempts, _ = strconv.Atoi(h.Get(headerDeadAttempts))
	// The request goes again to its original subject, when that is the
	// request subject of a kind.
	if kind := messages.Kind(strings.TrimPrefix(d.Subject, messages.SubjectPrefix)); kind.Valid() && kind.RequestSubject() == d.Subject {
		d.Kind = kind
	}
	if d.Subject == "" {
		d.Subject = d.Kind.RequestSubject()
	}
	if !d.PayloadOmitted {
		req, err := messages.ParseRequest(d.Kind, msg.Data(), messages.Header(h), fallbackID)
		d.ID = req.ID
		if d.RequestID == "" {
			d.RequestID = req.RequestID
		}
		d.Follow = req.Follow
		d.retryable = err == nil
		var link struct {
			RetryOf string `json:"retry_of"`
		}
		if json.Unmarshal(msg.Data(), &link) == nil && messages.ValidRequestID(link.RetryOf) {
			d.RetryOf = link.RetryOf
		}
	}
	if d.RequestID == "" {
		d.RequestID = fallbackID
	}
	return d
}

// printDeadLetters writes the dead letters as a table, oldest first, or
// with jsonLines one JSON object a line.
func printDeadLetters(w io.Writer, letters []deadLetter, jsonLines bool) {
	if jsonLines {
		for i := range letters {
			line, _ := json.Marshal(&letters[i]) // strings, numbers and a time always encode
			fmt.Fprintf(w, "%s\n", escapeUnprintable(line))
		}
		return
	}
	columns := []column{{"KIND", kindColumn, kindMin}, {"ID", jobIDColumn, 0}, {"REQUEST_ID", requestIDColumn, requestIDMin},
		{"WHEN_UTC", 0, 0}, {"WHY", 0, 0}}
	rows := make([][]string, 0, len(letters))
	for i := range letters {
		d := &letters[i]
		rows = append(rows, []string{string(d.Kind), orDash(d.ID), orDash(d.RequestID),
			d.StoredAt.Format(whenLayout), d.why()})
	}
	writeTable(w, columns, rows)
}

// escapeUnprintable writes every character of a JSON text that is not
// printable as a \u escape: encoding/json escapes the C0 controls but
// leaves DEL, C1 controls (U+009B opens an escape sequence on many terminals)
// and format characters such as the bidirectional overrides as they are,
// and whoever may publish on the dead-letter subjects writes the headers
// they come from. Outside its strings a JSON text is ASCII, so the escapes
// land in strings, and the values decode unchanged.
func escapeUnprintable(text []byte) []byte {
	var b strings.Builder
	for _, r := range string(text) {
		if unicode.IsPrint(r) {
			b.WriteRune(r)
			continue
		}
		if r1, r2 := utf16.EncodeRune(r); r1 != unicode.ReplacementChar {
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
		} else {
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return []byte(b.String())
}
