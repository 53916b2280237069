package cluster

// The audit log in a cluster. Its volume (an entry per state-changing
// request, kept for weeks) does not belong in etcd, which holds a few GiB
// and replicates every write; nor do the api replicas keep files, being
// stateless. So it stays where the work is done:
//
//   - Each node keeps the audit log it keeps on one machine (its SQLite,
//     with its retention) of the requests it served: every request on a
//     sandbox, template or snapshot it holds. The api replica names the
//     caller to the node (restapi.OnBehalf* headers, honoured only with
//     the key the nodes share), so an entry carries the caller's team, key
//     and address rather than the shared key's.
//   - What a replica decides alone (a refused key, a create a team's limits
//     refuse, where a create was placed) it writes as JSON lines with msg
//     "audit" to its stdout (serve --role api; its other logs go to
//     stderr), for the cluster's log pipeline: a pod's stdout is what
//     Kubernetes collects.
//   - GET /sandpit/v1/audit through any replica (an admin key, or the
//     shared key) asks every live node with the same query and merges the
//     entries by time, each with "node" added. A dead node's entries are
//     missing until it is back; the replicas' own lines are in the log
//     pipeline only.

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/sandpit-dev/sandpit/internal/restapi"
)

var onBehalfHeaders = []string{
	restapi.OnBehalfTeamID, restapi.OnBehalfTeamName, restapi.OnBehalfKeyID,
	restapi.OnBehalfKeyName, restapi.OnBehalfClient, restapi.OnBehalfAdmin,
}

func hasOnBehalf(h http.Header) bool {
	return slices.ContainsFunc(onBehalfHeaders, func(k string) bool { return h.Get(k) != "" })
}

// auditMaxLimit bounds a merged audit page, as a node's.
const auditMaxLimit = 10000

// audit writes one entry of what the replica decided alone to its log.
func (rt *Router) recordAudit(r *http.Request, action, target string, result int, detail string) {
	k, _ := r.Context().Value(keyInfoKey{}).(KeyInfo)
	if _, scoped := teamOf(r.Context()); scoped && k.ID == "" {
		k.ID, k.Name = "env", "SANDPIT_API_KEY"
	}
	rt.audit.LogAttrs(r.Context(), slog.LevelInfo, "audit",
		slog.String("action", action), slog.String("target", target), slog.String("result", strconv.Itoa(result)),
		slog.String("team_id", k.TeamID), slog.String("team", k.TeamName), slog.String("key_id", k.ID), slog.String("key_name", k.Name),
		slog.String("client", r.RemoteAddr), slog.String("detail", detail))
}

// auditLog serves GET /sandpit/v1/audit: every live node's entries for
// the query, merged oldest first and cut at its limit.
func (rt *Router) auditLog(w http.ResponseWriter, r *http.Request) {
	k, _ := r.Context().Value(keyInfoKey{}).(KeyInfo)
	if _, scoped := teamOf(r.Context()); scoped && k.ID != "" && !k.Admin {
		writeJSONError(w, http.StatusForbidden, "reading the audit log needs an admin key (sandpit keys create --admin --kubeconfig)")
		return
	}
	limit := 1000 // a node's default
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > auditMaxLimit {
			writeJSONError(w, http.StatusBadRequest, "limit must be between 1 and 10000")
			return
		}
		limit = n
	}
	live, err := rt.liveNodes(r.Context())
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	type answer struct {
		node    string
		entries []map[string]json.RawMessage
		err     error
		code    int
		body    []byte
	}
	answers := make(chan answer, len(live))
	for node, addr := range live {
		go func() {
			a := answer{node: node}
			req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+addr+r.URL.RequestURI(), nil)
			if err != nil {
				a.err = err
				answers <- a
				return
			}
			req.Header = r.Header.Clone()
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				a.err = err
				answers <- a
				return
			}
			defer res.Body.Close()
			a.body, a.err = io.ReadAll(res.Body)
			a.code = res.StatusCode
			if a.err == nil && a.code == http.StatusOK {
				a.err = json.Unmarshal(a.body, &a.entries)
			}
			answers <- a
		}()
	}
	type entry struct {
		at  time.Time
		raw map[string]json.RawMessage
	}
	var all []entry
	var refused *answer
	notFound := 0
	for range live {
		a := <-answers
		switch {
		case a.err != nil:
			rt.log.Warn("reading a node's audit log", "node", a.node, "err", a.err)
		case a.code == http.StatusNotFound:
			// A team none of this node's entries name.
			notFound++
		case a.code != http.StatusOK:
			refused = &a
		default:
			for _, e := range a.entries {
				var at time.Time
				_ = json.Unmarshal(e["time"], &at)
				e["node"], _ = json.Marshal(a.node)
				all = append(all, entry{at: at, raw: e})
			}
		}
	}
	if refused != nil || (notFound > 0 && notFound == len(live)) {
		if refused == nil {
			writeJSONError(w, http.StatusNotFound, "no team "+strconv.Quote(r.URL.Query().Get("team"))+" in any node's audit log")
			return
		}
		// The client's mistake (a bad since) is every node's.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(refused.code)
		_, _ = w.Write(refused.body)
		return
	}
	slices.SortStableFunc(all, func(a, b entry) int { return a.at.Compare(b.at) })
	out := make([]map[string]json.RawMessage, 0, min(limit, len(all)))
	for _, e := range all[:min(limit, len(all))] {
		out = append(out, e.raw)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
