package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// commandName is the command's name in its messages.
const commandName = "cckm-cancel"

// kindsCommand is the subcommand that lists the kinds of job. No kind of
// the kinds table may be named so (a test checks).
const kindsCommand = "kinds"

// Bounds of the close matches named for an unknown kind.
const (
	// minMatchLength is the shortest name, or word of a name, matched as a
	// part of a kind or of what it cancels: a shorter one ("s", "az") is
	// part of nearly every kind, and naming them all helps nobody.
	minMatchLength = 3
	// typoFraction: a name within len/typoFraction edits (at least one) of
	// a kind is a misspelling of it: "refesh", "sap-snyc" or
	// "azure-bulkjobs", but not "gcp-sync" of "oci-sync" (two edits in
	// eight, and another cloud).
	typoFraction = 5
	// maxMatchLength: a longer name is matched with nothing; it is no slip
	// of any kind, and the edit distance costs its length times a kind's.
	maxMatchLength = 128
)

// printKinds writes every kind of the kinds table with its request subject
// and what it cancels: a table, or with jsonLines one JSON object a line
// (with the CipherTrust Manager collection too).
func printKinds(w io.Writer, jsonLines bool) {
	table := messages.KindTable()
	if jsonLines {
		for _, info := range table {
			line, _ := json.Marshal(struct { // strings always encode
				Kind       messages.Kind `json:"kind"`
				Subject    string        `json:"subject"`
				Cancels    string        `json:"cancels"`
				Collection string        `json:"collection"`
			}{info.Kind, info.Kind.RequestSubject(), info.Job, info.Collection})
			fmt.Fprintf(w, "%s\n", line)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSUBJECT\tCANCELS")
	for _, info := range table {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", info.Kind, info.Kind.RequestSubject(), info.Job)
	}
	_ = tw.Flush()
}

// kindsUsage is the kinds part of the usage text: one line per kind with
// what it cancels.
func kindsUsage() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, info := range messages.KindTable() {
		fmt.Fprintf(tw, "  %s\t%s\n", info.Kind, info.Job)
	}
	_ = tw.Flush()
	return b.String()
}

// parseKind returns the kind named, or an error that names the kinds close
// to name.
func parseKind(name string) (messages.Kind, error) {
	kind := messages.Kind(name)
	if kind.Valid() {
		return kind, nil
	}
	all := fmt.Sprintf("%s %s lists all %d", commandName, kindsCommand, len(messages.Kinds))
	matches := closeKinds(name)
	if len(matches) == 0 {
		return "", fmt.Errorf("unknown kind of job %q (%s)", name, all)
	}
	names := make([]string, len(matches))
	for i, k := range matches {
		names[i] = string(k)
	}
	return "", fmt.Errorf("unknown kind of job %q; did you mean %s? (%s)", name, strings.Join(names, ", "), all)
}

// closeKinds lists the kinds that name may have meant, best first: those
// within a few edits of it, those it is part of ("sync", "azure-bulk") and
// those part of it ("azure-bulkjobs"); then those that have every word of
// it, in the kind or in what the kind cancels ("aws", "oracle", "hsm").
// Only when there are none of either, those that share any word with it
// ("gcp-sync"). Each group is closest first, ties in the table's order.
func closeKinds(name string) []messages.Kind {
	lower := strings.ToLower(strings.TrimSpace(name))
	if lower == "" || len(lower) > maxMatchLength {
		return nil
	}
	// Groups of matches, best first.
	const (
		closeName = iota
		everyWord
		someWord
	)
	type match struct {
		kind         messages.Kind
		group        int
		editDistance int
	}
	var matches []match
	typos := max(1, len(lower)/typoFraction)
	words := matchWords(lower)
	for _, info := range messages.KindTable() {
		kind := string(info.Kind)
		d := editDistance(lower, kind)
		kindWords := append(matchWords(kind), matchWords(strings.ToLower(info.Job))...)
		has := func(w string) bool { return slices.Contains(kindWords, w) }
		switch {
		case d <= typos || (len(lower) >= minMatchLength && strings.Contains(kind, lower)) || strings.Contains(lower, kind):
			matches = append(matches, match{info.Kind, closeName, d})
		case len(words) > 0 && !slices.ContainsFunc(words, func(w string) bool { return !has(w) }):
			matches = append(matches, match{info.Kind, everyWord, d})
		case slices.ContainsFunc(words, has):
			matches = append(matches, match{info.Kind, someWord, d})
		}
	}
	if slices.ContainsFunc(matches, func(m match) bool { return m.group != someWord }) {
		matches = slices.DeleteFunc(matches, func(m match) bool { return m.group == someWord })
	}
	slices.SortStableFunc(matches, func(a, b match) int {
		return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.editDistance, b.editDistance))
	})
	kinds := make([]messages.Kind, len(matches))
	for i, m := range matches {
		kinds[i] = m.kind
	}
	return kinds
}

// matchWords splits s at anything but letters and digits, keeping the
// words of at least minMatchLength characters.
func matchWords(s string) []string {
	words := strings.FieldsFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	})
	return slices.DeleteFunc(words, func(w string) bool { return len(w) < minMatchLength })
}

// editDistance is the optimal string alignment distance between a and b,
// in bytes: the fewest insertions, deletions, substitutions and swaps of
// two neighbours that turn a into b ("snyc" is one edit from "sync").
func editDistance(a, b string) int {
	// rows[i][j] is the distance between a[:i] and b[:j].
	rows := make([][]int, len(a)+1)
	for i := range rows {
		rows[i] = make([]int, len(b)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d := min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d = min(d, rows[i-2][j-2]+1)
			}
			rows[i][j] = d
		}
	}
	return rows[len(a)][len(b)]
}
