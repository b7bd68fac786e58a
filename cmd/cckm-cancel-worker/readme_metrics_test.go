package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// readmeSeries is one series the README's Operations section names: a
// metric, the label names it lists ({kind,status}) or the label values it
// selects ({status="failed"}).
type readmeSeries struct {
	text     string
	name     string
	labels   []string          // listed label names: the series has exactly these
	selected map[string]string // selected label values: such a series exists
}

// readmeMetric is a metric in backquotes: a name, then a {…} of label
// names or label="value" selectors.
var readmeMetric = regexp.MustCompile("`(cckm_cancel_[a-z_]+)(\\{[^}`]*\\})?`")

// operationsSeries reads every metric the README's "## Operations" and
// "## Runbook" sections name.
func operationsSeries(t *testing.T) []readmeSeries {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	text := string(readme)
	var sections []string
	for _, heading := range []string{"## Operations", "## Runbook"} {
		start := strings.Index(text, "\n"+heading+"\n")
		require.NotEqual(t, -1, start, "README has no %s section", heading)
		section := text[start+1:]
		if end := strings.Index(section[1:], "\n## "); end != -1 {
			section = section[:end+1]
		}
		sections = append(sections, section)
	}
	section := strings.Join(strings.Fields(strings.Join(sections, " ")), " ") // a name may be wrapped in the middle of its braces

	var series []readmeSeries
	for _, match := range readmeMetric.FindAllStringSubmatch(section, -1) {
		s := readmeSeries{text: match[0], name: match[1], selected: map[string]string{}}
		if braces := strings.Trim(match[2], "{}"); braces != "" {
			for _, item := range strings.Split(braces, ",") {
				item = strings.TrimSpace(item)
				if name, value, ok := strings.Cut(item, "="); ok {
					s.selected[name] = strings.Trim(value, `"`)
				} else {
					s.labels = append(s.labels, item)
				}
			}
		}
		series = append(series, s)
	}
	return series
}

// The README's runbook and metric list name series an operator will
// query. Before any request, /metrics serves every one of them, with every
// kind, and with the labels the README lists.
func TestMetricsServeEverySeriesTheREADMENamesBeforeAnyRequest(t *testing.T) {
	srv, _ := newTestHTTPServer(t, fakeReadiness{})
	_, _, body := get(t, srv.URL+"/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)

	named := operationsSeries(t)
	require.GreaterOrEqual(t, len(named), 20, "the README's Operations and Runbook sections name the metrics")
	for _, want := range named {
		t.Run(want.text, func(t *testing.T) {
			family, ok := families[want.name]
			require.True(t, ok, "/metrics serves no %s", want.name)
			require.NotEmpty(t, family.GetMetric())
			if want.labels != nil {
				for _, metric := range family.GetMetric() {
					assert.ElementsMatch(t, want.labels, labelNames(metric), "the labels of %s", want.name)
				}
			}
			var matching []*dto.Metric
			for _, metric := range family.GetMetric() {
				if selects(metric, want.selected) {
					matching = append(matching, metric)
				}
			}
			require.NotEmpty(t, matching, "no series of %s has %v", want.name, want.selected)
			if !hasLabel(matching[0], "kind") {
				return
			}
			for _, kind := range messages.Kinds {
				assert.True(t, hasSeriesOfKind(matching, kind), "no series %s for kind %s", want.text, kind)
			}
		})
	}
}

func labelNames(metric *dto.Metric) []string {
	var names []string
	for _, pair := range metric.GetLabel() {
		names = append(names, pair.GetName())
	}
	return names
}

func hasLabel(metric *dto.Metric, name string) bool {
	for _, pair := range metric.GetLabel() {
		if pair.GetName() == name {
			return true
		}
	}
	return false
}

// selects reports whether metric has every label value of selected.
func selects(metric *dto.Metric, selected map[string]string) bool {
	found := 0
	for _, pair := range metric.GetLabel() {
		if value, ok := selected[pair.GetName()]; ok {
			if value != pair.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(selected)
}

func hasSeriesOfKind(metrics []*dto.Metric, kind messages.Kind) bool {
	for _, metric := range metrics {
		if selects(metric, map[string]string{"kind": string(kind)}) {
			return true
		}
	}
	return false
}
