package mdlinks

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// repoRoot is the repository's top, two levels above this package.
const repoRoot = "../.."

// link matches an inline Markdown link or image: [text](target).
var link = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

// markdownFiles lists the Markdown files of the repository, outside
// hidden directories and testdata.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(repoRoot, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != repoRoot && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(name, ".md") {
			files = append(files, path)
		}
		return nil
	})
	require.NoError(t, err)
	return files
}

// inlineCode matches a code span.
var inlineCode = regexp.MustCompile("`[^`]*`")

// withoutCode blanks fenced code blocks and inline code, where brackets
// and parentheses are not links.
func withoutCode(text string) string {
	return inlineCode.ReplaceAllString(withoutFences(text), "``")
}

// withoutFences blanks fenced code blocks, where a # starts no heading.
func withoutFences(text string) string {
	var out strings.Builder
	fenced := false
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			out.WriteString("\n")
			continue
		}
		if fenced {
			out.WriteString("\n")
			continue
		}
		out.WriteString(line)
	}
	return out.String()
}

// anchors returns the GitHub anchors of a Markdown file's headings.
func anchors(text string) map[string]bool {
	set := map[string]bool{}
	seen := map[string]int{}
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	for _, line := range strings.Split(withoutFences(text), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		heading := strings.TrimSpace(strings.TrimLeft(line, "#"))
		slug := strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(heading), ""), " ", "-")
		if n := seen[slug]; n > 0 {
			set[slug+"-"+strconv.Itoa(n)] = true
		} else {
			set[slug] = true
		}
		seen[slug]++
	}
	return set
}

// TestRelativeLinksResolve checks every relative link of every Markdown
// file: its file exists, and its fragment names a heading there.
func TestRelativeLinksResolve(t *testing.T) {
	files := markdownFiles(t)
	require.NotEmpty(t, files)
	checked := 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		for _, m := range link.FindAllStringSubmatch(withoutCode(string(raw)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, fragment, _ := strings.Cut(target, "#")
			resolved := file
			if path != "" {
				resolved = filepath.Join(filepath.Dir(file), path)
				_, err := os.Stat(resolved)
				require.NoError(t, err, "%s links to %q, which does not exist", file, target)
			}
			if fragment != "" {
				body, err := os.ReadFile(resolved)
				require.NoError(t, err, "%s links to %q", file, target)
				require.True(t, anchors(string(body))[fragment],
					"%s links to %q: no heading there has the anchor #%s", file, target, fragment)
			}
			checked++
		}
	}
	require.NotZero(t, checked, "no relative link found: the link pattern is broken")
}

// TestTheCheckFindsABrokenLink makes sure the check above can fail.
func TestTheCheckFindsABrokenLink(t *testing.T) {
	text := "# Top\n\nSee [it](#top) and [gone](#nowhere).\n"
	set := anchors(text)
	require.True(t, set["top"])
	require.True(t, anchors("## Cancelling from the command line: `cckm-cancel`\n")["cancelling-from-the-command-line-cckm-cancel"])
	require.False(t, set["nowhere"])
	require.Len(t, link.FindAllStringSubmatch(withoutCode(text), -1), 2)
	require.Empty(t, link.FindAllStringSubmatch(withoutCode("`[a](b)`\n```\n[c](d)\n```\n"), -1))
}
