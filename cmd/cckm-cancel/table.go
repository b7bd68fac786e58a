package main

import (
	"fmt"
	"io"
	"strings"
	"unicode"
)

// tableWidth is the most columns a table line takes: it fits a terminal of
// 100 columns (and a 120-column one with room to spare) without wrapping.
const tableWidth = 100

// Bounds of the table's cells, in columns, with the reason beside.
const (
	// columnGap is the space between two columns.
	columnGap = 2
	// requestIDColumn bounds a request id: the run's own ("3f9a1c2b-12",
	// "ir-2291-7") fit, a UUID is cut after its first 13 characters, which
	// tell it from the others (dead retry takes such a start).
	requestIDColumn = 14
	// jobIDColumn bounds a job id: a UUID fits; whatever else a dead
	// letter carries is cut.
	jobIDColumn = 36
	// kindColumn fits the longest kind, azure-certificate-sync.
	kindColumn = 22
	// Columns that may be narrowed, when the last one would have less than
	// lastColumnMin, down to what still tells their values apart: the run
	// prefix of a request id ("3f9a1c2b…"; the row's job id is whole), the
	// start of a kind, an overall status as long as "in progress".
	requestIDMin = 9
	kindMin      = 8
	overallMin   = 11
	// lastColumnMin is the room the last column (the message) keeps when
	// the others can be narrowed: an error code and the start of its
	// message.
	lastColumnMin = 20
	// wordColumn bounds the columns of one word (a status, an overall
	// status): "in progress" and "interrupted" fit; CipherTrust Manager's
	// overall status may be longer and is cut.
	wordColumn = 12
)

// ellipsis marks a cut cell.
const ellipsis = "…"

// column is one column of a table: its header, the most columns its cells
// take (0: no bound but the line's), and the fewest it may be narrowed to
// when the line is too wide (0: it is not narrowed).
type column struct {
	header string
	limit  int
	min    int
}

// writeTable writes a header line and one line per row, the columns
// aligned; each cell is made one line (control characters become spaces),
// cut to its column's limit, and every line to tableWidth columns, so the
// last column (the message) is the one cut. Widths are terminal columns:
// a wide (East Asian) character takes two, a combining mark none.
func writeTable(w io.Writer, columns []column, rows [][]string) {
	cells := make([][]string, 0, len(rows)+1)
	header := make([]string, len(columns))
	for i, c := range columns {
		header[i] = c.header
	}
	cells = append(cells, header)
	for _, row := range rows {
		line := make([]string, len(columns))
		for i, c := range columns {
			if i < len(row) {
				line[i] = cut(oneLine(row[i]), c.limit)
			}
		}
		cells = append(cells, line)
	}
	widths := make([]int, len(columns))
	for _, line := range cells {
		for i, cell := range line {
			widths[i] = max(widths[i], width(cell))
		}
	}
	narrow(columns, widths)
	for _, line := range cells[1:] {
		for i := range line[:len(line)-1] {
			line[i] = cut(line[i], widths[i])
		}
	}
	var b strings.Builder
	for _, line := range cells {
		b.Reset()
		for i, cell := range line {
			b.WriteString(cell)
			if i < len(line)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-width(cell)+columnGap))
			}
		}
		fmt.Fprintln(w, cut(strings.TrimRight(b.String(), " "), tableWidth))
	}
}

// narrow narrows the widest of the columns that may be narrowed, a column
// at a time, until the last column has lastColumnMin or none can be
// narrowed further.
func narrow(columns []column, widths []int) {
	if len(columns) < 2 {
		return
	}
	for {
		used := 0
		for _, w := range widths[:len(widths)-1] {
			used += w + columnGap
		}
		over := used + min(widths[len(widths)-1], lastColumnMin) - tableWidth
		if over <= 0 {
			return
		}
		widest := -1
		for i, c := range columns[:len(columns)-1] {
			if c.min > 0 && widths[i] > max(c.min, len(c.header)) && (widest < 0 || widths[i]-c.min > widths[widest]-columns[widest].min) {
				widest = i
			}
		}
		if widest < 0 {
			return
		}
		widths[widest] = max(widths[widest]-over, columns[widest].min, len(columns[widest].header))
	}
}

// cut returns s cut to at most limit terminal columns, ending with "…"
// when cut; a limit of 0 or less leaves s whole.
func cut(s string, limit int) string {
	if limit <= 0 || width(s) <= limit {
		return s
	}
	used := 0
	for i, r := range s {
		if used+runeWidth(r) > limit-1 { // room for the "…", one column
			return s[:i] + ellipsis
		}
		used += runeWidth(r)
	}
	return s
}

// width is how many terminal columns s takes.
func width(s string) int {
	n := 0
	for _, r := range s {
		n += runeWidth(r)
	}
	return n
}

// wideRanges are the East Asian wide and fullwidth characters (Hangul,
// CJK, kana, fullwidth forms, emoji): a terminal draws each in two
// columns.
var wideRanges = &unicode.RangeTable{
	R16: []unicode.Range16{
		{Lo: 0x1100, Hi: 0x115f, Stride: 1},
		{Lo: 0x2e80, Hi: 0x303e, Stride: 1},
		{Lo: 0x3041, Hi: 0x33ff, Stride: 1},
		{Lo: 0x3400, Hi: 0x4dbf, Stride: 1},
		{Lo: 0x4e00, Hi: 0x9fff, Stride: 1},
		{Lo: 0xa000, Hi: 0xa4cf, Stride: 1},
		{Lo: 0xac00, Hi: 0xd7a3, Stride: 1},
		{Lo: 0xf900, Hi: 0xfaff, Stride: 1},
		{Lo: 0xfe30, Hi: 0xfe4f, Stride: 1},
		{Lo: 0xff00, Hi: 0xff60, Stride: 1},
		{Lo: 0xffe0, Hi: 0xffe6, Stride: 1},
	},
	R32: []unicode.Range32{
		{Lo: 0x1f300, Hi: 0x1f64f, Stride: 1},
		{Lo: 0x1f900, Hi: 0x1f9ff, Stride: 1},
		{Lo: 0x20000, Hi: 0x2fffd, Stride: 1},
		{Lo: 0x30000, Hi: 0x3fffd, Stride: 1},
	},
}

// runeWidth is how many terminal columns r takes: none for a combining
// mark, two for a wide character, else one.
func runeWidth(r rune) int {
	switch {
	case unicode.In(r, unicode.Mn, unicode.Me):
		return 0
	case unicode.Is(wideRanges, r):
		return 2
	default:
		return 1
	}
}

// oneLine replaces every character that is not printable (line breaks,
// tabs, escapes, C1 controls, and format characters such as the
// bidirectional overrides that would reorder what follows) with a space,
// so that a cell is one line, cannot move the cursor and reads as sent.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
}
