// Package clip readies program output for a model's context window: it
// cuts long output down to its head and tail with a note of what was cut,
// and strips terminal colour codes. The MCP server and the coding agent
// both hand output to models this way.
package clip

import (
	"fmt"
	"regexp"
	"unicode/utf8"
)

// Middle keeps the start and end of text within about limit bytes, cut at
// rune boundaries, with a note of how many bytes it dropped between them:
// a failure's first lines say what ran, its last ones what went wrong.
func Middle(text string, limit int) string {
	if len(text) <= limit {
		return text
	}
	head, tail := limit/2, limit-limit/2
	for head > 0 && !utf8.RuneStart(text[head]) {
		head--
	}
	start := len(text) - tail
	for start < len(text) && !utf8.RuneStart(text[start]) {
		start++
	}
	return fmt.Sprintf("%s\n[... %d bytes truncated ...]\n%s", text[:head], start-head, text[start:])
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// StripANSI removes terminal escape sequences (the colours of a Python
// traceback), which only cost a model tokens.
func StripANSI(s string) string { return ansi.ReplaceAllString(s, "") }
