// Package mdlinks holds the test that every relative link in the
// repository's Markdown files resolves: a file or directory that exists,
// and a #fragment that names a heading of the file it points to.
package mdlinks
