package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	keyword string // upper case: FROM, RUN, …
	args    string
}

// stage is one FROM … up to the next FROM.
type stage struct {
	image        string // FROM's image reference
	name         string // AS name, "" when none
	instructions []instruction
}

// find returns the stage's instructions with keyword.
func (s stage) find(keyword string) []instruction {
	var found []instruction
	for _, in := range s.instructions {
		if in.keyword == keyword {
			found = append(found, in)
		}
	}
	return found
}

// parseDockerfile reads the stages of a Dockerfile: enough of the syntax
// for deploy/Dockerfile (comments, parser directives, "\" continuations).
func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	var stages []stage
	var pending string
	for _, line := range strings.Split(string(readFile(t, path)), "\n") {
		trimmed := strings.TrimSpace(line)
		if pending == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			pending += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		full := strings.TrimSpace(pending + trimmed)
		pending = ""
		keyword, args, _ := strings.Cut(full, " ")
		in := instruction{keyword: strings.ToUpper(keyword), args: strings.TrimSpace(args)}
		if in.keyword == "FROM" {
			fields := strings.Fields(in.args)
			require.NotEmpty(t, fields, "%s: FROM without an image", path)
			st := stage{image: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.name = fields[2]
			}
			stages = append(stages, st)
			continue
		}
		require.NotEmpty(t, stages, "%s: %s before FROM", path, in.keyword)
		stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, in)
	}
	require.Empty(t, pending, "%s ends in a continuation line", path)
	return stages
}

// execForm decodes an instruction written in exec form (a JSON array).
func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var argv []string
	require.NoError(t, json.Unmarshal([]byte(in.args), &argv), "%s %s: want the exec form, a JSON array", in.keyword, in.args)
	return argv
}

// image is what the tests need to know of deploy/Dockerfile.
type image struct {
	buildGo    string // the golang image's tag, e.g. 1.26
	binDir     string // where the binaries land, e.g. /usr/local/bin/
	entrypoint []string
	exposed    []string
	user       string
}

// loadImage parses deploy/Dockerfile.
func loadImage(t *testing.T) image {
	t.Helper()
	stages := parseDockerfile(t, dockerfilePath)
	require.Len(t, stages, 2, "a build stage and a run stage")
	build, run := stages[0], stages[1]
	var img image
	repo, tag, ok := strings.Cut(build.image, ":")
	require.True(t, ok && repo == "golang", "the build stage is FROM golang:<version>, got %s", build.image)
	img.buildGo = tag
	for _, copyIn := range run.find("COPY") {
		fields := strings.Fields(copyIn.args)
		if len(fields) == 3 && fields[0] == "--from="+build.name {
			img.binDir = fields[2]
		}
	}
	entry := run.find("ENTRYPOINT")
	require.Len(t, entry, 1, "one ENTRYPOINT")
	img.entrypoint = execForm(t, entry[0])
	for _, expose := range run.find("EXPOSE") {
		img.exposed = append(img.exposed, strings.Fields(expose.args)...)
	}
	users := run.find("USER")
	require.Len(t, users, 1, "one USER in the run stage")
	img.user = users[0].args
	return img
}

func TestTheBuildStageUsesTheGoVersionOfGoMod(t *testing.T) {
	goLine := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(readFile(t, filepath.Join(repoRoot, "go.mod"))))
	require.NotNil(t, goLine, "no go line in go.mod")
	img := loadImage(t)
	assert.Regexp(t, `^`+goLine[1]+`\.`+goLine[2]+`(\.\d+)?(-[a-z0-9.]+)?$`, img.buildGo,
		"golang image tag against go.mod's go %s.%s", goLine[1], goLine[2])
}

// shippedCommands are the programs the image holds: the worker, the fake
// CipherTrust Manager of docker-compose.yml and the producer CLI. Not
// ./cmd/...: cmd/cckm-bench is a benchmark tool, not shipped.
var shippedCommands = []string{"./cmd/cckm-cancel-worker", "./cmd/cckm-fake-cm", "./cmd/cckm-cancel"}

// goBuildLine returns the build stage's go build command line.
func goBuildLine(t *testing.T) string {
	t.Helper()
	stages := parseDockerfile(t, dockerfilePath)
	var runs string
	for _, in := range stages[0].find("RUN") {
		runs += in.args + "\n"
	}
	goBuild := regexp.MustCompile(`go build [^\n]*`).FindString(runs)
	require.NotEmpty(t, goBuild, "no go build in the build stage")
	return goBuild
}

// builtPackages returns the packages go build names after -o /out/.
func builtPackages(t *testing.T) []string {
	t.Helper()
	goBuild := goBuildLine(t)
	_, packages, ok := strings.Cut(goBuild, "-o /out/ ")
	require.True(t, ok, "go build does not write to /out/: %s", goBuild)
	return strings.Fields(packages)
}

func TestTheBuildIsStaticTrimmedAndBuildsTheShippedCommands(t *testing.T) {
	stages := parseDockerfile(t, dockerfilePath)
	build := stages[0]
	var env, runs string
	for _, in := range build.find("ENV") {
		env += in.args + " "
	}
	for _, in := range build.find("RUN") {
		runs += in.args + "\n"
	}
	assert.Regexp(t, `CGO_ENABLED=0`, env+runs, "a static binary for distroless/static")
	goBuild := goBuildLine(t)
	assert.Contains(t, goBuild, "-trimpath")
	assert.Contains(t, goBuild, `-ldflags "-s -w"`)
	assert.Equal(t, shippedCommands, builtPackages(t), "the image holds the shipped programs only, not ./cmd/...")
	assert.Equal(t, "build", build.name)
}

func TestTheRunStageIsDistrolessNonRootWithCACertificates(t *testing.T) {
	stages := parseDockerfile(t, dockerfilePath)
	run := stages[len(stages)-1]
	// distroless/static carries /etc/ssl/certs/ca-certificates.crt and the
	// nonroot user 65532.
	assert.Regexp(t, `^gcr\.io/distroless/static(-debian\d+)?:nonroot$`, run.image)
	img := loadImage(t)
	assert.Equal(t, "65532:65532", img.user, "numeric, so that Kubernetes' runAsNonRoot can check it")
	assert.Equal(t, "/usr/local/bin/", img.binDir)
	assert.Equal(t, []string{"/usr/local/bin/cckm-cancel-worker"}, img.entrypoint)
	assert.Equal(t, []string{"8080"}, img.exposed)
	assert.Empty(t, run.find("HEALTHCHECK"), "distroless has no shell to run a health check")
}

// Every package the image builds is a command of the module, and every
// binary the image is used for (its entrypoint, the Compose cckm service's)
// is built.
func TestTheImageBinariesAreCommandsOfTheModule(t *testing.T) {
	img := loadImage(t)
	built := map[string]bool{}
	for _, pkg := range builtPackages(t) {
		name, ok := strings.CutPrefix(pkg, "./cmd/")
		require.True(t, ok && name != "" && !strings.Contains(name, "/"), "%s is not a command under ./cmd", pkg)
		info, err := os.Stat(filepath.Join(repoRoot, "cmd", name))
		require.NoError(t, err, "no ./cmd/%s to build", name)
		assert.True(t, info.IsDir())
		built[img.binDir+name] = true
	}
	for _, binary := range []string{img.entrypoint[0], composeFakeCMEntrypoint(t)} {
		assert.True(t, built[binary], "%s is not built into the image", binary)
	}
}

func TestTheDockerIgnoreKeepsTheSources(t *testing.T) {
	patterns := map[string]bool{}
	for _, line := range strings.Split(string(readFile(t, dockerignore)), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns[line] = true
		}
	}
	assert.True(t, patterns[".git"], ".git is not sent to the builder")
	entries, err := os.ReadDir(repoRoot)
	require.NoError(t, err)
	for _, entry := range entries {
		name := entry.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if name == "go.mod" || name == "go.sum" || (entry.IsDir() && hasGoSources(t, filepath.Join(repoRoot, name))) {
			if name == "deploy" {
				continue // only tests and a doc file; not needed by the build
			}
			for pattern := range patterns {
				assert.False(t, strings.TrimSuffix(strings.TrimPrefix(pattern, "/"), "/") == name || pattern == "*",
					".dockerignore pattern %q leaves out %s, which the build needs", pattern, name)
			}
		}
	}
}

// hasGoSources reports whether dir or a directory below it holds a .go file.
func hasGoSources(t *testing.T, dir string) bool {
	t.Helper()
	found := false
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found
}
