package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTheVersionLineNamesTheModuleVersionAndTheRevision(t *testing.T) {
	tests := []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{
			name: "a tagged build from a clean checkout",
			info: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
				{Key: "vcs", Value: "git"},
				{Key: "vcs.revision", Value: "3f9a1c2b7d4e5f60718293a4b5c6d7e8f9012345"},
				{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
				{Key: "vcs.modified", Value: "false"},
			}},
			want: "cckm-cancel v1.4.0 (revision 3f9a1c2b7d4e, 2026-12-01T10:00:00Z) go1.26.8",
		},
		{
			name: "a build with uncommitted changes says modified",
			info: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "abc"},
				{Key: "vcs.modified", Value: "true"},
			}},
			want: "cckm-cancel (devel) (revision abc, modified) go1.26.8",
		},
		{
			name: "a build without version control information has the version alone",
			info: debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201100000-3f9a1c2b7d4e"}},
			want: "cckm-cancel v0.0.0-20261201100000-3f9a1c2b7d4e",
		},
		{
			name: "no module version reads as a development build",
			info: debug.BuildInfo{},
			want: "cckm-cancel (devel)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, format("cckm-cancel", &tt.info))
		})
	}
}

func TestStringReadsThisBinarysBuildInfo(t *testing.T) {
	line := String("cckm-cancel-worker")
	info, ok := debug.ReadBuildInfo()
	if !ok {
		assert.Equal(t, "cckm-cancel-worker unknown version", line)
		return
	}
	assert.True(t, strings.HasPrefix(line, "cckm-cancel-worker "+info.Main.Version), line)
	assert.NotContains(t, line, "\n")
}
