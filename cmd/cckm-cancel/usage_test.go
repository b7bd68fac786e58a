package main

import (
	"regexp"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHelpGoesToStandardOutputWithTheDoubleDashFlags(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"refresh", jobA, "--help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			res := newCLI(t, nil).run(t, args...)

			assert.Equal(t, exitCanceled, res.code)
			assert.Empty(t, res.stderr)
			assert.True(t, strings.HasPrefix(res.stdout, "Usage: cckm-cancel [flags] KIND [id...]\n"), res.stdout)
			for _, flag := range []string{"-s, --server URLS", "--timeout duration", "--follow", "--json", "--request-prefix PREFIX",
				"--password-file FILE", "--all", "--version", "--progress string"} {
				assert.Contains(t, res.stdout, "\n  "+flag, "the usage shows %s", flag)
			}
			assert.Contains(t, res.stdout, "(default 1m0s)")
			assert.Contains(t, res.stdout, "cckm-cancel dead ls")
			assert.Contains(t, res.stdout, "cckm-cancel dead retry")
			assert.NotRegexp(t, regexp.MustCompile(`(?m)^  -[a-z]{2,}`), res.stdout, "no flag is shown with one dash")
			assert.NotContains(t, res.stdout, "\n  -s \n", "-s is shown with --server, not on its own")
		})
	}
}

func TestABadFlagIsAUsageErrorOnStandardError(t *testing.T) {
	res := newCLI(t, nil).run(t, "--frobnicate", "refresh", jobA)

	assert.Equal(t, exitUsage, res.code)
	assert.Empty(t, res.stdout)
	assert.Equal(t, "cckm-cancel: flag provided but not defined: -frobnicate\n", res.stderr)
}

func TestVersionPrintsTheBuildInfo(t *testing.T) {
	res := newCLI(t, nil).run(t, "--version")

	assert.Equal(t, exitCanceled, res.code)
	assert.Empty(t, res.stderr)
	require.True(t, strings.HasPrefix(res.stdout, "cckm-cancel "), res.stdout)
	assert.Equal(t, 1, strings.Count(res.stdout, "\n"))
	if info, ok := debug.ReadBuildInfo(); ok && info.GoVersion != "" {
		assert.Contains(t, res.stdout, info.GoVersion)
	}
}
