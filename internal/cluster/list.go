package cluster

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The sandbox list (GET /v2/sandboxes) through the api role is a merge of
// the live nodes' pages rather than a list of the team's Sandbox objects:
// the nodes hold what a listed sandbox shows (state, CPU, memory, disk,
// envd version, its exact start) and evaluate the state, metadata and
// template filters with the single-machine code, while a Sandbox object
// holds a subset, its phase written after the answer. Every node orders
// its sandboxes the same way (start time, then ID) and pages from a
// cursor in that order, so the api role asks each node for the page after
// the client's cursor, merges the answers by the same order and cuts the
// page: one request per live node per page, no state kept between pages.
//
// One wrinkle: the wire's startedAt is in milliseconds, the nodes' cursors
// in nanoseconds. The merge orders by (millisecond, ID), sends each node
// a cursor that takes in the whole millisecond (a superset) and drops what
// is not after the client's cursor; a node's page is complete only up to
// its last item's millisecond, so the merge cuts there when the node has
// more.

// Paging limits, as a node's (internal/sandbox's MaxListLimit).
const (
	maxListLimit = 100
	// maxListRounds bounds the rounds of node requests for one page: a
	// team whose sandboxes are few among many others' may need several
	// (the nodes list every team's); past it the page is cut short with
	// a token where the walk stopped, which the SDKs follow.
	maxListRounds = 10
)

// listPos is a place in the list's order: a sandbox's start in
// milliseconds and its ID.
type listPos struct {
	ms int64
	id string
}

// compare orders a before b as the list does (newest first when desc).
func (a listPos) compare(b listPos, desc bool) int {
	c := cmp.Compare(a.ms, b.ms)
	if c == 0 {
		c = strings.Compare(a.id, b.id)
	}
	if desc {
		c = -c
	}
	return c
}

// token is the cursor of the page after a, in the nodes' format
// (base64url of "unix-nanoseconds.ID"): a token of a single node works
// here too.
func (a listPos) token() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(a.ms*int64(time.Millisecond), 10) + "." + a.id))
}

// nodeToken is the cursor sent to a node for the items after a: its whole
// millisecond included, as the node compares in nanoseconds.
func (a listPos) nodeToken(desc bool) string {
	ns := a.ms * int64(time.Millisecond)
	if desc {
		ns += int64(time.Millisecond) - 1
	}
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(ns, 10) + "." + a.id))
}

var errBadToken = errors.New("nextToken is not a token this server issued")

func parseListToken(s string) (listPos, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return listPos{}, errBadToken
	}
	ns, id, ok := strings.Cut(string(raw), ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || id == "" || err != nil {
		return listPos{}, errBadToken
	}
	return listPos{ms: time.Unix(0, n).UnixMilli(), id: id}, nil
}

// listedItem is one sandbox of a node's page.
type listedItem struct {
	pos listPos
	raw json.RawMessage
}

// nodePage is one node's answer: its items in its order, whether it has
// more, or the answer to pass on (a client's mistake is every node's).
type nodePage struct {
	items []listedItem
	more  bool
	err   error
	code  int
	body  []byte
}

// listPaged serves GET /v2/sandboxes: one page of the team's sandboxes
// across the live nodes, with the next page's cursor in X-Next-Token.
func (rt *Router) listPaged(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := maxListLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxListLimit {
			writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("limit must be between 1 and %d", maxListLimit))
			return
		}
		limit = n
	}
	desc := q.Get("order") != "asc"
	var pos *listPos
	if s := q.Get("nextToken"); s != "" {
		p, err := parseListToken(s)
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
		pos = &p
	}
	live, err := rt.liveNodes(r.Context())
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	keep, err := rt.teamFilter(r.Context())
	if err != nil {
		rt.log.Warn("listing a team's sandboxes", "err", err)
		writeJSONError(w, http.StatusServiceUnavailable, "listing the team's sandboxes failed")
		return
	}

	kept := []listedItem{}
	per := min(maxListLimit, limit+1)
	for range maxListRounds {
		pages := rt.askPages(r, live, q, per, pos, desc)
		var merged []listedItem
		var bound *listPos
		more := false
		for _, pg := range pages {
			if answered, skip := rt.nodeAnswer(w, r, pg.code, pg.body, pg.err); answered {
				return
			} else if skip {
				continue
			}
			if pg.more && len(pg.items) > 0 {
				more = true
				if last := pg.items[len(pg.items)-1].pos; bound == nil || msBefore(last.ms, bound.ms, desc) {
					bound = &last
				}
			}
			for _, it := range pg.items {
				if pos == nil || it.pos.compare(*pos, desc) > 0 {
					merged = append(merged, it)
				}
			}
		}
		slices.SortFunc(merged, func(a, b listedItem) int { return a.pos.compare(b.pos, desc) })
		progressed := false
		for _, it := range merged {
			// Past the bound a node with more may hold items not
			// asked for yet.
			if bound != nil && !msBefore(it.pos.ms, bound.ms, desc) {
				break
			}
			p := it.pos
			pos, progressed = &p, true
			if keep != nil && !keep[it.pos.id] {
				continue
			}
			kept = append(kept, it)
			if len(kept) > limit {
				rt.writePage(w, kept[:limit], kept[limit-1].pos.token())
				return
			}
		}
		if !more {
			rt.writePage(w, kept, "")
			return
		}
		if !progressed && per == maxListLimit {
			// A node started more than a page of sandboxes within one
			// millisecond: no cursor in milliseconds gets past them.
			writeJSONError(w, http.StatusServiceUnavailable, "listing the sandboxes failed: too many started within one millisecond on one node")
			return
		}
		per = maxListLimit
	}
	next := ""
	if pos != nil {
		next = pos.token()
	}
	rt.writePage(w, kept, next)
}

// msBefore reports whether millisecond a comes before b in the order.
func msBefore(a, b int64, desc bool) bool {
	if desc {
		return a > b
	}
	return a < b
}

// teamFilter returns the IDs of the request's team's sandboxes, or nil
// when the Router does not scope by team: the nodes list every team's
// (they know only the key they share).
func (rt *Router) teamFilter(ctx context.Context) (map[string]bool, error) {
	team, scoped := teamOf(ctx)
	if !scoped {
		return nil, nil
	}
	sel := "!" + TeamLabel
	if team != "" {
		sel = TeamLabel + "=" + team
	}
	sbs, err := rt.cfg.Client.ListSandboxes(ctx, sel)
	if err != nil {
		return nil, err
	}
	mine := make(map[string]bool, len(sbs))
	for _, sb := range sbs {
		mine[sb.Name] = true
	}
	return mine, nil
}

// askPages asks every live node for the page of per items after pos,
// with the client's filters.
func (rt *Router) askPages(r *http.Request, live map[string]string, q url.Values, per int, pos *listPos, desc bool) []nodePage {
	nq := url.Values{}
	for k, v := range q {
		nq[k] = v
	}
	nq.Set("limit", strconv.Itoa(per))
	nq.Del("nextToken")
	if pos != nil {
		nq.Set("nextToken", pos.nodeToken(desc))
	}
	out := make(chan nodePage, len(live))
	for _, addr := range live {
		go func() { out <- rt.askPage(r, "http://"+addr+r.URL.Path+"?"+nq.Encode()) }()
	}
	pages := make([]nodePage, 0, len(live))
	for range live {
		pages = append(pages, <-out)
	}
	return pages
}

func (rt *Router) askPage(r *http.Request, u string) nodePage {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u, nil)
	if err != nil {
		return nodePage{err: err}
	}
	req.Header = r.Header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nodePage{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		return nodePage{err: err, code: res.StatusCode, body: b}
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nodePage{err: fmt.Errorf("reading a node's sandbox list: %w", err)}
	}
	pg := nodePage{more: res.Header.Get("X-Next-Token") != "", items: make([]listedItem, 0, len(raws))}
	for _, raw := range raws {
		var f struct {
			SandboxID string    `json:"sandboxID"`
			StartedAt time.Time `json:"startedAt"`
		}
		if err := json.Unmarshal(raw, &f); err != nil || f.SandboxID == "" {
			return nodePage{err: fmt.Errorf("reading a node's sandbox list: an item without sandboxID or startedAt")}
		}
		pg.items = append(pg.items, listedItem{pos: listPos{ms: f.StartedAt.UnixMilli(), id: f.SandboxID}, raw: raw})
	}
	return pg
}

func (rt *Router) writePage(w http.ResponseWriter, items []listedItem, next string) {
	out := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		out = append(out, it.raw)
	}
	if next != "" {
		w.Header().Set("X-Next-Token", next)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// nodeAnswer sorts one node's answer to a list fanned out to every node.
// The client's own mistake (a bad key, a bad filter) is every node's: the
// first such answer is passed on as it came (answered). A node that could
// not be asked is logged and left out of the list (skip).
func (rt *Router) nodeAnswer(w http.ResponseWriter, r *http.Request, code int, body []byte, err error) (answered, skip bool) {
	if code != 0 && code != http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(body)
		return true, false
	}
	if err != nil {
		rt.log.Warn("listing on a node", "path", r.URL.Path, "err", err)
		return false, true
	}
	return false, false
}
