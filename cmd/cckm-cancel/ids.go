package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// sourcedID is a job id and where it was read, for messages about it.
type sourcedID struct {
	id     string
	source string // "argument 2", "ids.txt:7", "stdin:3"
}

// collectIDs gathers the job ids from the arguments, from file ("-" is
// stdin) and, when neither names any and stdin is not a terminal, from
// stdin. It checks every id and returns an error naming each bad one, so
// that nothing is sent when any is wrong. An id given again (in any case)
// is dropped with a warning.
func collectIDs(args []string, file string, stdin io.Reader, stderr io.Writer) ([]string, error) {
	var ids []sourcedID
	for i, arg := range args {
		ids = append(ids, sourcedID{id: arg, source: "argument " + strconv.Itoa(i+1)})
	}
	switch {
	case file == "-":
		if stdin == nil {
			return nil, errors.New("--file -: no standard input")
		}
		read, err := readIDs(stdin, "stdin")
		if err != nil {
			return nil, err
		}
		ids = append(ids, read...)
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		read, err := readIDs(f, file)
		f.Close()
		if err != nil {
			return nil, err
		}
		ids = append(ids, read...)
	case len(args) == 0 && stdin != nil && !isTerminal(stdin):
		read, err := readIDs(stdin, "stdin")
		if err != nil {
			return nil, err
		}
		ids = append(ids, read...)
	}
	if len(ids) == 0 {
		return nil, errors.New("no job ids: give them as arguments, with --file, or on standard input")
	}
	return checkIDs(ids, stderr)
}

// readIDs reads one id per line; white space around it, blank lines and
// everything from a "#" on are ignored.
func readIDs(r io.Reader, name string) ([]sourcedID, error) {
	var ids []sourcedID
	scanner := bufio.NewScanner(r)
	for line := 1; scanner.Scan(); line++ {
		text, _, _ := strings.Cut(scanner.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		ids = append(ids, sourcedID{id: text, source: name + ":" + strconv.Itoa(line)})
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("read ids from %s: %w", name, err)
	}
	return ids, nil
}

// checkIDs returns the distinct ids in order, or an error when any is not
// a UUID. Each bad id gets a line on stderr; the error sums them up.
func checkIDs(ids []sourcedID, stderr io.Writer) ([]string, error) {
	seen := make(map[string]string, len(ids))
	distinct := make([]string, 0, len(ids))
	bad := 0
	for _, s := range ids {
		if !messages.IsUUID(s.id) {
			fmt.Fprintf(stderr, "cckm-cancel: %s: %q is not a job id (a UUID: 8-4-4-4-12 hexadecimal digits)\n", s.source, s.id)
			bad++
			continue
		}
		key := strings.ToLower(s.id)
		if first, dup := seen[key]; dup {
			fmt.Fprintf(stderr, "cckm-cancel: %s: %s was already given (%s); it is sent once\n", s.source, s.id, first)
			continue
		}
		seen[key] = s.source
		distinct = append(distinct, s.id)
	}
	if bad > 0 {
		return nil, fmt.Errorf("%d of %d job ids are not UUIDs; nothing was sent", bad, len(ids))
	}
	return distinct, nil
}

// request is one cancel request to send.
type request struct {
	index     int
	kind      messages.Kind
	id        string
	requestID string
	// retryOf is the request id of the dead letter this request retries,
	// or "" for a first request.
	retryOf string
	// deadSequence is that dead letter's sequence in the dead-letter
	// stream.
	deadSequence uint64
	// msgID is the Nats-Msg-Id, when it is not requestID: a retry's names
	// its dead letter, so that two runs retrying it at once send it once.
	msgID string
	// follow asks the worker to follow the job even when the run does not
	// wait for it: a retry keeps its dead letter's "follow".
	follow bool
}

// natsMsgID is the request's Nats-Msg-Id, its de-duplication key.
func (r *request) natsMsgID() string {
	if r.msgID != "" {
		return r.msgID
	}
	return r.requestID
}

// runPrefixDigits is how many random hexadecimal digits name a run in its
// default request ids: 32 bits, so that two runs within the request
// stream's duplicate window (minutes) practically never share one, in few
// enough columns for the table.
const runPrefixDigits = 8

// newRunPrefix is the request-id prefix of a run without --request-prefix:
// random hexadecimal digits and a dash ("3f9a1c2b-"), so the run's request
// ids are short and share a start to watch for.
func newRunPrefix() string {
	return messages.NewRequestID()[:runPrefixDigits] + "-"
}

// newRequests gives every id a request_id: prefix followed by its position
// (from 1); an empty prefix is a new run prefix.
func newRequests(kind messages.Kind, ids []string, prefix string) ([]request, error) {
	if prefix == "" {
		prefix = newRunPrefix()
	}
	requests := make([]request, len(ids))
	for i, id := range ids {
		requestID := prefix + strconv.Itoa(i+1)
		if !messages.ValidRequestID(requestID) {
			return nil, fmt.Errorf("--request-prefix %q does not make a valid request_id (1 to %d printable characters, no white space at either end)",
				prefix, messages.MaxRequestIDLength)
		}
		requests[i] = request{index: i, kind: kind, id: id, requestID: requestID}
	}
	return requests, nil
}
