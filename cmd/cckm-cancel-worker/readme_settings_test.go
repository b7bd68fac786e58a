package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// settingsSection is the README's "## Settings" section.
func settingsSection(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	text := string(readme)
	start := strings.Index(text, "\n## Settings\n")
	require.NotEqual(t, -1, start, "README has no ## Settings section")
	section := text[start+1:]
	if end := strings.Index(section[1:], "\n## "); end != -1 {
		section = section[:end+1]
	}
	return section
}

// The README is the manual: every setting the binary reads is in its
// Settings table, with the default the binary uses, and the table names
// no setting the binary does not read.
func TestTheREADMEListsEverySettingWithItsDefault(t *testing.T) {
	section := settingsSection(t)
	rows := map[string]string{} // variable → its row
	variable := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		for _, m := range variable.FindAllStringSubmatch(cells[1], -1) {
			rows[m[1]] = line
		}
	}
	known := map[string]bool{}
	for _, s := range settings {
		known[s.env] = true
		row, ok := rows[s.env]
		if !assert.True(t, ok, "the README's Settings table has no row for %s", s.env) {
			continue
		}
		if s.def != "" {
			cells := strings.Split(row, "|")
			require.GreaterOrEqual(t, len(cells), 4, row)
			assert.True(t, sameDefault(cells[2], s.def), "the README's default of %s is %q, the binary's %q", s.env, cells[2], s.def)
		}
	}
	for env := range rows {
		if strings.HasPrefix(env, "OTEL_") || strings.HasSuffix(env, "_FILE") && known[strings.TrimSuffix(env, "_FILE")] {
			continue // the OpenTelemetry SDK's own variables; the _FILE form of a secret
		}
		assert.True(t, known[env], "the README's Settings table names %s, which the binary does not read", env)
	}
}

// sameDefault reports whether a README cell states def: as written, or as
// a duration of the same length (15m for 15m0s).
func sameDefault(cell, def string) bool {
	if strings.Contains(cell, def) {
		return true
	}
	want, err := time.ParseDuration(def)
	if err != nil {
		return false
	}
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cell, -1) {
		if d, err := time.ParseDuration(m[1]); err == nil && d == want {
			return true
		}
	}
	return false
}
