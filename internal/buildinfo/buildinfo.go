// Package buildinfo formats what the Go toolchain recorded about a binary
// (its module version and version-control revision) for a --version flag.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// shortRevision is how many characters of a revision are shown: as many as
// git shows for a short commit id, enough to find it in the history.
const shortRevision = 12

// String is the one line a binary's --version prints: name, the main
// module's version, and the version-control revision, commit time and
// "modified" (uncommitted changes) when the build recorded them, e.g.
// "cckm-cancel v1.4.0 (revision 3f9a1c2b7d4e, 2026-12-01T10:00:00Z)". A
// binary built without module information says "unknown version".
func String(name string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " unknown version"
	}
	return format(name, info)
}

// format is String for given build information.
func format(name string, info *debug.BuildInfo) string {
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var revision, when string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var vcs []string
	if revision != "" {
		vcs = append(vcs, "revision "+revision[:min(len(revision), shortRevision)])
	}
	if when != "" {
		vcs = append(vcs, when)
	}
	if modified {
		vcs = append(vcs, "modified")
	}
	line := name + " " + version
	if len(vcs) > 0 {
		line += " (" + strings.Join(vcs, ", ") + ")"
	}
	if info.GoVersion != "" {
		line += " " + info.GoVersion
	}
	return line
}
