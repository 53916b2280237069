package interp

import (
	"encoding/json"
	"strings"
)

// mimeFields maps Jupyter MIME types to the fields of a result line
// (spec §5.1). Types not listed go into "extra".
var mimeFields = map[string]string{
	"text/plain":             "text",
	"text/html":              "html",
	"text/markdown":          "markdown",
	"image/svg+xml":          "svg",
	"image/png":              "png",
	"image/jpeg":             "jpeg",
	"application/pdf":        "pdf",
	"text/latex":             "latex",
	"application/json":       "json",
	"application/javascript": "javascript",
	"e2b/data":               "data",
	"e2b/chart":              "chart",
}

// resultFromMIME builds a result line from a Jupyter MIME bundle.
func resultFromMIME(data map[string]json.RawMessage, main bool) map[string]any {
	r := map[string]any{"type": "result", "is_main_result": main}
	var extra map[string]any
	for mime, raw := range data {
		var v any = raw
		if !isJSONMIME(mime) {
			// Text-like MIME types come as a string or, per nbformat, as
			// a list of lines.
			if s, ok := jsonString(raw); ok {
				v = s
			}
		}
		field, known := mimeFields[mime]
		if !known {
			if extra == nil {
				extra = map[string]any{}
			}
			extra[mime] = v
			continue
		}
		if s, ok := v.(string); ok && field == "text" {
			v = stripQuotes(s)
		}
		r[field] = v
	}
	if extra != nil {
		r["extra"] = extra
	}
	return r
}

// isJSONMIME reports whether a MIME type carries a JSON document rather
// than text.
func isJSONMIME(mime string) bool {
	return mime == "application/json" || strings.HasSuffix(mime, "+json") || strings.HasPrefix(mime, "e2b/")
}

// jsonString decodes raw as a string, or as a list of strings joined.
func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var lines []string
	if json.Unmarshal(raw, &lines) == nil && len(raw) > 0 && raw[0] == '[' {
		return strings.Join(lines, ""), true
	}
	return "", false
}

// stripQuotes removes the quotes around a str repr, as upstream does for
// text/plain: 'abc' → abc.
func stripQuotes(s string) string {
	if len(s) >= 2 {
		if q := s[0]; (q == '\'' || q == '"') && s[len(s)-1] == q {
			return s[1 : len(s)-1]
		}
	}
	return s
}
