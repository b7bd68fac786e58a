package main

import (
	"fmt"
	"runtime/debug"
)

// versionLine is what --version prints: the name, the module version and
// the VCS revision the binary was built from.
func versionLine(name string) string {
	info, ok := debug.ReadBuildInfo()
	return formatVersion(name, info, ok)
}

// formatVersion formats versionLine from build information; ok is false
// when the binary carries none.
func formatVersion(name string, info *debug.BuildInfo, ok bool) string {
	version, revision, modified := "unknown", "unknown", false
	if ok && info != nil {
		if info.Main.Version != "" {
			version = info.Main.Version
		}
		for _, setting := range info.Settings {
			switch setting.Key {
			case "vcs.revision":
				revision = setting.Value
			case "vcs.modified":
				modified = setting.Value == "true"
			}
		}
	}
	line := fmt.Sprintf("%s %s (revision %s", name, version, revision)
	if modified {
		line += ", modified"
	}
	return line + ")"
}
