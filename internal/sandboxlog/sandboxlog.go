// Package sandboxlog keeps a sandbox's recent log: its agent's own lines
// (process starts and ends, warnings) and its template's start command
// output, bounded, for E2B's sandbox logs endpoints. It holds no file and
// starts no goroutine; a Ring is a few hundred KiB at most.
package sandboxlog

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Levels, as E2B's API spells them.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// Entry is one log line.
type Entry struct {
	Time    time.Time
	Level   string // one of the Level constants
	Logger  string // what wrote it, e.g. "processSvc" (E2B envd's names)
	Message string
	Fields  map[string]string
}

func (e Entry) size() int {
	n := len(e.Level) + len(e.Logger) + len(e.Message) + 64
	for k, v := range e.Fields {
		n += len(k) + len(v)
	}
	return n
}

// Bounds of a Ring made by New: the last MaxEntries lines, at most
// MaxBytes of them.
const (
	MaxEntries = 1000
	MaxBytes   = 1 << 20
	// MaxLine cuts longer messages (E2B's envd cuts at 64 KiB).
	MaxLine = 16 << 10
)

// Ring is a bounded log: appending past its bounds drops the oldest
// entries. The zero value is not usable; make one with New. It is safe for
// concurrent use.
type Ring struct {
	maxEntries, maxBytes int

	mu      sync.Mutex
	entries []Entry // oldest first; a slice, trimmed from the front
	bytes   int
}

// New returns a Ring bounded by MaxEntries and MaxBytes.
func New() *Ring { return NewSized(MaxEntries, MaxBytes) }

// NewSized returns a Ring bounded by maxEntries and maxBytes.
func NewSized(maxEntries, maxBytes int) *Ring {
	return &Ring{maxEntries: maxEntries, maxBytes: maxBytes}
}

// Append adds e, cutting an over-long message and dropping the oldest
// entries past the bounds. A zero Time becomes now, an empty Level info.
func (r *Ring) Append(e Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Level == "" {
		e.Level = LevelInfo
	}
	if len(e.Message) > MaxLine {
		e.Message = e.Message[:MaxLine]
	}
	n := e.size()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
	r.bytes += n
	drop := 0
	for len(r.entries)-drop > 1 && (len(r.entries)-drop > r.maxEntries || r.bytes > r.maxBytes) {
		r.bytes -= r.entries[drop].size()
		drop++
	}
	if drop > 0 {
		// Copy down rather than reslice so the backing array does not
		// keep growing (and holding dropped messages) forever.
		r.entries = append(r.entries[:0], r.entries[drop:]...)
	}
}

// Query selects entries of at least MinLevel whose message contains
// Search: forward, those from Cursor on (inclusive; all when zero),
// oldest first; Backward, those up to Cursor (all when zero), newest
// first. At most Limit of them (all when 0).
type Query struct {
	Cursor   time.Time
	MinLevel string
	Search   string
	Limit    int
	Backward bool
}

// Entries returns the entries q selects, copies the caller may keep.
func (r *Ring) Entries(q Query) []Entry {
	minRank := levelRank(q.MinLevel)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []Entry{}
	match := func(e Entry) bool {
		inRange := !e.Time.Before(q.Cursor)
		if q.Backward {
			inRange = q.Cursor.IsZero() || !e.Time.After(q.Cursor)
		}
		return inRange && levelRank(e.Level) >= minRank &&
			(q.Search == "" || strings.Contains(e.Message, q.Search))
	}
	if q.Backward {
		for i := len(r.entries) - 1; i >= 0 && (q.Limit <= 0 || len(out) < q.Limit); i-- {
			if match(r.entries[i]) {
				out = append(out, r.entries[i])
			}
		}
		return out
	}
	for _, e := range r.entries {
		if q.Limit > 0 && len(out) >= q.Limit {
			break
		}
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

func levelRank(l string) int {
	switch strings.ToLower(l) {
	case LevelDebug:
		return 0
	case LevelWarn, "warning":
		return 2
	case LevelError:
		return 3
	case "":
		return -1
	default:
		return 1
	}
}

// NormalizeLevel maps a level as loggers spell it ("INFO", "WARNING",
// "DEBUG-4") onto the API's four.
func NormalizeLevel(l string) string {
	l = strings.ToLower(l)
	switch {
	case strings.HasPrefix(l, "debug"):
		return LevelDebug
	case strings.HasPrefix(l, "warn"):
		return LevelWarn
	case strings.HasPrefix(l, "err"):
		return LevelError
	default:
		return LevelInfo
	}
}

// ParseAgentLine turns one line the agent wrote to its stderr into an
// Entry. The agent logs JSON (log/slog's JSONHandler: time, level, msg and
// attributes); anything else (the sandbox init's own messages, a panic)
// is kept whole as an error line from "init".
func ParseAgentLine(line []byte, now time.Time) Entry {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		return Entry{Time: now, Level: LevelError, Logger: "init", Message: string(line)}
	}
	e := Entry{Time: now, Level: LevelInfo, Logger: "envd", Fields: map[string]string{}}
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			b, _ := json.Marshal(v)
			s = string(b)
		}
		switch k {
		case "time":
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				e.Time = t
			}
		case "level":
			e.Level = NormalizeLevel(s)
		case "msg":
			e.Message = s
		case "logger":
			e.Logger = s
		default:
			e.Fields[k] = s
		}
	}
	return e
}

// Line renders e as E2B's v1 logs API does: one JSON object of its fields
// with level, logger and msg (what `e2b sandbox logs` parses).
func (e Entry) Line() string {
	m := make(map[string]string, len(e.Fields)+3)
	for k, v := range e.Fields {
		m[k] = v
	}
	m["level"], m["logger"], m["msg"] = e.Level, e.Logger, e.Message
	b, err := json.Marshal(m)
	if err != nil { // strings only: cannot fail
		panic(fmt.Sprintf("encoding a log line: %v", err))
	}
	return string(b)
}
