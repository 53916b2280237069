package restapi_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/sandboxlog"
)

// TestSandboxLogs reads a sandbox's log through E2B's v1 endpoint (what
// `e2b sandbox logs` polls: JSON lines with level and logger, and
// structured entries) and the v2 one (cursor, direction, level, search).
func TestSandboxLogs(t *testing.T) {
	e := newEnv(t, "")
	id := e.create(t, `{"templateID":"base"}`)["sandboxID"].(string)
	ring, err := e.rt.Log(id)
	if err != nil {
		t.Fatal(err)
	}
	// The fake's own first line is at wall-clock time; these follow it.
	base := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	ring.Append(sandboxlog.Entry{Time: base, Level: "info", Logger: "processSvc", Message: "hello from the start command",
		Fields: map[string]string{"event_type": "process_output", "stream": "stdout", "pid": "7"}})
	ring.Append(sandboxlog.Entry{Time: base.Add(time.Second), Level: "warn", Logger: "envd", Message: "something odd"})
	ring.Append(sandboxlog.Entry{Time: base.Add(2 * time.Second), Level: "debug", Logger: "envd", Message: "detail"})

	type v1 struct {
		Logs []struct {
			Timestamp time.Time `json:"timestamp"`
			Line      string    `json:"line"`
		} `json:"logs"`
		LogEntries []struct {
			Timestamp time.Time         `json:"timestamp"`
			Level     string            `json:"level"`
			Message   string            `json:"message"`
			Fields    map[string]string `json:"fields"`
		} `json:"logEntries"`
	}
	get := func(target string) (int, v1) {
		r := e.do(t, "GET", target, "")
		var out v1
		if r.status == http.StatusOK {
			if err := json.Unmarshal(r.body, &out); err != nil {
				t.Fatalf("%s: %s: %v", target, r.body, err)
			}
		}
		return r.status, out
	}

	status, all := get("/sandboxes/" + id + "/logs")
	if status != http.StatusOK || len(all.Logs) != 4 || len(all.LogEntries) != 4 {
		t.Fatalf("all logs: %d %+v", status, all)
	}
	var line map[string]string
	if err := json.Unmarshal([]byte(all.Logs[1].Line), &line); err != nil {
		t.Fatalf("line %q is not JSON: %v", all.Logs[1].Line, err)
	}
	if line["level"] != "info" || line["logger"] != "processSvc" || line["msg"] != "hello from the start command" || line["stream"] != "stdout" {
		t.Errorf("line = %v", line)
	}
	le := all.LogEntries[1]
	if !le.Timestamp.Equal(base) || !all.Logs[1].Timestamp.Equal(base) || le.Level != "info" || le.Message != "hello from the start command" ||
		le.Fields["logger"] != "processSvc" || le.Fields["pid"] != "7" {
		t.Errorf("entry = %+v", le)
	}

	// The CLI's follow mode: start = last timestamp + 1 ms.
	after := strconv.FormatInt(base.UnixMilli()+1, 10)
	if status, got := get("/sandboxes/" + id + "/logs?start=" + after + "&limit=1"); status != http.StatusOK || len(got.Logs) != 1 || got.LogEntries[0].Message != "something odd" {
		t.Errorf("start and limit: %d %+v", status, got)
	}
	if status, _ := get("/sandboxes/" + id + "/logs?limit=-1"); status != http.StatusBadRequest {
		t.Errorf("negative limit: %d, want 400", status)
	}
	if status, _ := get("/sandboxes/nope/logs"); status != http.StatusNotFound {
		t.Errorf("logs of an unknown sandbox: %d, want 404", status)
	}

	v2 := func(query string) []string {
		t.Helper()
		r := e.do(t, "GET", "/v2/sandboxes/"+id+"/logs"+query, "")
		var out struct {
			Logs []struct {
				Message string `json:"message"`
			} `json:"logs"`
		}
		if err := json.Unmarshal(r.body, &out); r.status != http.StatusOK || err != nil {
			t.Fatalf("v2 %s: %d %s", query, r.status, r.body)
		}
		var msgs []string
		for _, l := range out.Logs {
			msgs = append(msgs, l.Message)
		}
		return msgs
	}
	cursor := strconv.FormatInt(base.UnixMilli(), 10)
	for _, tt := range []struct{ query, want string }{
		{"?cursor=" + cursor + "&level=warn", "[something odd]"},
		{"?cursor=" + cursor + "&level=debug", "[hello from the start command something odd detail]"},
		{"?direction=backward&limit=2", "[detail something odd]"},
		{"?search=start%20command", "[hello from the start command]"},
	} {
		if got := v2(tt.query); fmtList(got) != tt.want {
			t.Errorf("v2 %s = %s, want %s", tt.query, fmtList(got), tt.want)
		}
	}
	if r := e.do(t, "GET", "/v2/sandboxes/"+id+"/logs?direction=sideways", ""); r.status != http.StatusBadRequest {
		t.Errorf("bad direction: %d %s", r.status, r.body)
	}

	// A killed sandbox's log is still served (E2B's are), for the last
	// 32 sandboxes that ended.
	if r := e.do(t, "DELETE", "/sandboxes/"+id, ""); r.status != http.StatusNoContent {
		t.Fatalf("kill: %d %s", r.status, r.body)
	}
	if status, got := get("/sandboxes/" + id + "/logs"); status != http.StatusOK || len(got.Logs) != 4 {
		t.Errorf("logs of a killed sandbox: %d %+v, want its 4 entries", status, got)
	}
	for range 32 {
		other := e.create(t, `{"templateID":"base"}`)["sandboxID"].(string)
		if r := e.do(t, "DELETE", "/sandboxes/"+other, ""); r.status != http.StatusNoContent {
			t.Fatalf("kill: %d %s", r.status, r.body)
		}
	}
	if status, _ := get("/sandboxes/" + id + "/logs"); status != http.StatusNotFound {
		t.Errorf("logs of the 33rd sandbox to end: %d, want 404", status)
	}
}

func fmtList(l []string) string { return "[" + strings.Join(l, " ") + "]" }
