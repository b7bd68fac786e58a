package deploy_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/worker"
)

var dashboardPath = filepath.Join("grafana", "cckm-cancel-worker.json")

// scrapeLabels are the labels Prometheus adds to every series it scrapes
// (the dashboard selects instances by them); the worker serves no others
// than its metrics' own.
var scrapeLabels = []string{"job", "instance"}

// servedSeries is what the worker's registry serves under one name: the
// label names, and every label value it serves before any request.
type servedSeries struct {
	labels map[string]bool
	values map[string]map[string]bool // label → values present
}

// workerServes lists what the worker's /metrics serves: the registry the
// binary builds (the worker's metrics, the Go and process collectors),
// histograms as their _bucket, _sum and _count series.
func workerServes(t *testing.T) map[string]*servedSeries {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	worker.NewMetrics(reg)
	worker.NewLoginGauge(reg)
	families, err := reg.Gather()
	require.NoError(t, err)
	served := map[string]*servedSeries{}
	add := func(name string, metric *dto.Metric, extra ...string) {
		s := served[name]
		if s == nil {
			s = &servedSeries{labels: map[string]bool{}, values: map[string]map[string]bool{}}
			served[name] = s
		}
		for _, label := range extra {
			s.labels[label] = true
		}
		for _, pair := range metric.GetLabel() {
			s.labels[pair.GetName()] = true
			if s.values[pair.GetName()] == nil {
				s.values[pair.GetName()] = map[string]bool{}
			}
			s.values[pair.GetName()][pair.GetValue()] = true
		}
	}
	for _, family := range families {
		for _, metric := range family.GetMetric() {
			switch family.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(family.GetName()+"_bucket", metric, "le")
				add(family.GetName()+"_sum", metric)
				add(family.GetName()+"_count", metric)
			case dto.MetricType_SUMMARY:
				add(family.GetName(), metric, "quantile")
				add(family.GetName()+"_sum", metric)
				add(family.GetName()+"_count", metric)
			default:
				add(family.GetName(), metric)
			}
		}
	}
	return served
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a row's
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	require.NoError(t, json.Unmarshal(readFile(t, dashboardPath), &d))
	return d
}

// allPanels flattens rows.
func allPanels(panels []panel) []panel {
	var all []panel
	for _, p := range panels {
		all = append(all, p)
		all = append(all, allPanels(p.Panels)...)
	}
	return all
}

// promqlToken is a PromQL lexeme: an identifier, a string, or a single
// punctuation or operator.
var promqlToken = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|[A-Za-z_:][A-Za-z0-9_:]*|[0-9][0-9.]*[a-z]*|=~|!~|!=|==|>=|<=|\S`)

// promqlFunctions are the functions and aggregations the dashboard may
// use; an unknown one is most likely a typo.
var promqlFunctions = []string{
	"rate", "irate", "increase", "sum", "max", "min", "avg", "count", "topk", "bottomk",
	"histogram_quantile", "clamp_min", "clamp_max", "max_over_time", "min_over_time", "avg_over_time",
	"label_values", // Grafana's, in variable queries
}

// promqlKeywords take no part in naming metrics or labels.
var promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "group_left", "group_right"}

// usage is what one expression names: metrics with their matchers, and
// the labels of its by, without, on and ignoring clauses.
type usage struct {
	metrics  []string
	matchers []matcher
	grouping []string
}

type matcher struct {
	metric, label, op, value string
}

// parsePromQL reads the metric names and labels a PromQL expression (or a
// Grafana label_values query) names, and what it cannot read. Grafana's
// interval variables are read as durations.
func parsePromQL(expr string) (u usage, problems []string) {
	expr = strings.ReplaceAll(expr, "$__rate_interval", "5m")
	expr = strings.ReplaceAll(expr, "$__interval", "1m")
	tokens := promqlToken.FindAllString(expr, -1)
	for i := 0; i < len(tokens); i++ {
		tok := tokens[i]
		next := ""
		if i+1 < len(tokens) {
			next = tokens[i+1]
		}
		switch {
		case tok == "[": // a range: skip to its end
			for i < len(tokens) && tokens[i] != "]" {
				i++
			}
		case tok == "by" || tok == "without" || tok == "on" || tok == "ignoring":
			if next != "(" {
				problems = append(problems, tok+" without a label list")
				continue
			}
			for i += 2; i < len(tokens) && tokens[i] != ")"; i++ {
				if tokens[i] != "," {
					u.grouping = append(u.grouping, tokens[i])
				}
			}
		case tok == "label_values" && next == "(":
			// label_values(metric{…}, label): the label is the last argument.
			end := slices.Index(tokens[i:], ")") + i
			if end < i+3 || tokens[end-2] != "," {
				problems = append(problems, "label_values without a metric and a label")
				return u, problems
			}
			u.grouping = append(u.grouping, tokens[end-1])
			tokens = slices.Delete(slices.Clone(tokens), end-2, end) // drop ", label"
			i++
		case slices.Contains(promqlFunctions, tok) && (next == "by" || next == "without"):
			// an aggregation with its grouping first: sum by (le) (…)
		case isIdentifier(tok) && next == "(":
			if !slices.Contains(promqlFunctions, tok) {
				problems = append(problems, "unknown function "+tok)
			}
		case tok == "{":
			problems = append(problems, "a matcher list without a metric name")
		case isIdentifier(tok) && !slices.Contains(promqlKeywords, tok):
			u.metrics = append(u.metrics, tok)
			if next != "{" {
				continue
			}
			for i += 2; i < len(tokens) && tokens[i] != "}"; i++ {
				if tokens[i] == "," {
					continue
				}
				if i+2 >= len(tokens) {
					problems = append(problems, "a matcher cut short")
					return u, problems
				}
				value := strings.Trim(tokens[i+2], `"`)
				u.matchers = append(u.matchers, matcher{metric: tok, label: tokens[i], op: tokens[i+1], value: value})
				i += 2
			}
		}
	}
	return u, problems
}

var identifier = regexp.MustCompile(`^[A-Za-z_:]`)

func isIdentifier(tok string) bool { return identifier.MatchString(tok) }

// checkExpression returns the metrics expr names and its problems: a
// metric or label the worker does not serve, an exact matcher on a label
// value no series has before any request.
func checkExpression(expr string, served map[string]*servedSeries) (metrics, problems []string) {
	u, problems := parsePromQL(expr)
	if len(u.metrics) == 0 {
		problems = append(problems, "names no metric")
	}
	known := map[string]bool{}
	for _, label := range scrapeLabels {
		known[label] = true
	}
	for _, name := range u.metrics {
		s, ok := served[name]
		if !ok {
			problems = append(problems, "the worker does not serve "+name)
			continue
		}
		for label := range s.labels {
			known[label] = true
		}
	}
	for _, m := range u.matchers {
		s, ok := served[m.metric]
		switch {
		case !ok || slices.Contains(scrapeLabels, m.label):
		case !s.labels[m.label]:
			problems = append(problems, fmt.Sprintf("%s has no label %s", m.metric, m.label))
		case (m.op == "=" || m.op == "!=") && !strings.Contains(m.value, "$") && !s.values[m.label][m.value]:
			problems = append(problems, fmt.Sprintf("no series of %s has %s=%q", m.metric, m.label, m.value))
		}
	}
	for _, label := range u.grouping {
		if !known[label] {
			problems = append(problems, "none of its metrics has the label "+label)
		}
	}
	return u.metrics, problems
}

// The dashboard is a Grafana dashboard, and each of its queries names only
// metrics and labels the worker serves; every metric of the worker's has a
// panel.
func TestTheGrafanaDashboardQueriesOnlyWhatTheWorkerServes(t *testing.T) {
	d := loadDashboard(t)
	served := workerServes(t)
	assert.Equal(t, "cckm-cancel-worker", d.UID)
	assert.NotEmpty(t, d.Title)
	assert.GreaterOrEqual(t, d.SchemaVersion, 36, "a dashboard of current Grafana")

	variables := map[string]bool{}
	for _, v := range d.Templating.List {
		variables[v.Name] = true
		if v.Type != "query" {
			continue
		}
		var query struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &query); err != nil {
			require.NoError(t, json.Unmarshal(v.Query, &query.Query), "variable %s", v.Name)
		}
		_, problems := checkExpression(query.Query, served)
		assert.Empty(t, problems, "variable %s: %s", v.Name, query.Query)
	}
	require.True(t, variables["datasource"], "the data source is a variable, so the dashboard imports anywhere")

	used := map[string]bool{}
	panels := allPanels(d.Panels)
	require.NotEmpty(t, panels)
	for _, p := range panels {
		if p.Type == "row" {
			continue
		}
		assert.Equal(t, "prometheus", p.Datasource.Type, "panel %q", p.Title)
		assert.Equal(t, "${datasource}", p.Datasource.UID, "panel %q", p.Title)
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, target := range p.Targets {
			metrics, problems := checkExpression(target.Expr, served)
			assert.Empty(t, problems, "panel %q, query %s: %s", p.Title, target.RefID, target.Expr)
			for _, name := range metrics {
				used[strings.TrimSuffix(name, "_bucket")] = true
			}
		}
	}
	for name := range served {
		if strings.HasPrefix(name, "cckm_cancel_") && !strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") {
			assert.True(t, used[strings.TrimSuffix(name, "_bucket")], "no panel shows %s", name)
		}
	}
}

// The checker itself: it must catch what it is there to catch.
func TestTheDashboardCheckerCatchesWhatTheWorkerDoesNotServe(t *testing.T) {
	served := workerServes(t)
	for _, tc := range []struct{ name, expr string }{
		{"an unknown metric", `rate(cckm_cancel_no_such_total[5m])`},
		{"a label the metric lacks", `sum(rate(cckm_cancel_dead_letters_total{status="failed"}[5m]))`},
		{"the old HTTP status label", `rate(cckm_cancel_cm_call_duration_seconds_count{status="0"}[5m])`},
		{"a value no series has", `rate(cckm_cancel_cm_attempts_total{http_status="0"}[5m])`},
		{"grouping by a label no metric has", `sum by (code) (rate(cckm_cancel_redeliveries_total[5m]))`},
		{"a misspelt function", `sum(rat(cckm_cancel_redeliveries_total[5m]))`},
		{"a label_values of a missing label", `label_values(cckm_cancel_in_flight, kind)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := checkExpression(tc.expr, served)
			assert.Len(t, problems, 1, "%q: %v", tc.expr, problems)
		})
	}
	_, problems := checkExpression(`histogram_quantile(0.99, sum by (le, op) (rate(cckm_cancel_cm_call_duration_seconds_bucket{job=~"$job",kind=~"$kind"}[$__rate_interval])))`, served)
	assert.Empty(t, problems, "a good expression passes")
}
