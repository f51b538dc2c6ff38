package proxy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/proxy/rewrite"
)

// Report mode (guard mode "report", globally or on one inbound route; on
// egress routes, see egressreport.go) is
// how an operator rolls the guard out: tok decides every request exactly
// as in reject mode, records each refusal it would have made, and then
// acts as [ReportThen] says. The record is the metric
// tok_would_refuse_total{listener,route,code}, one WARN log line per
// decision (route, code, where, path and byte offset: never the value), and
// GET /report on the admin listener (the last hour by minute, and the
// latest decisions).

// ReportThen is what report mode does with a request reject mode would
// refuse.
type ReportThen string

// What report mode does after recording a would-be refusal.
const (
	// ReportForward forwards what reject mode would refuse as the guard-off
	// mode would: configured fields are still tokenized, everything else
	// reaches the app unchanged, card numbers included. It is the default.
	ReportForward ReportThen = "forward"
	// ReportTokenize acts as guard mode tokenize: the card numbers reject
	// mode would refuse in a body or query are tokenized, and what tokenize
	// mode refuses (a card in the path or a header, ambiguous digits) is
	// refused.
	ReportTokenize ReportThen = "tokenize"
)

// UnmarshalText sets t from the config; empty is [ReportForward].
func (t *ReportThen) UnmarshalText(text []byte) error {
	switch v := ReportThen(text); v {
	case "":
		*t = ReportForward
		return nil
	case ReportForward, ReportTokenize:
		*t = v
		return nil
	}
	return fmt.Errorf("%q: use forward or tokenize", text)
}

// actMode is the guard mode report mode acts with.
func (t ReportThen) actMode() rewrite.GuardMode {
	if t == ReportTokenize {
		return rewrite.GuardTokenize
	}
	return rewrite.GuardOff
}

// Report endpoint sizes.
const (
	// reportMinutes is the window GET /report counts over, by minute.
	reportMinutes = 60
	// reportRecent is how many of the latest decisions GET /report lists.
	reportRecent = 50
)

// noRouteLabel is the route label of requests on paths without a route.
const noRouteLabel = "-"

// reportKey is what a would-be refusal is counted under.
type reportKey struct{ Listener, Route, Code string }

// Decision is one would-be refusal as GET /report lists it. It holds where
// the card-like number stood, never the number.
type Decision struct {
	Time time.Time `json:"time"`
	// Listener is public for inbound routes, egress for egress routes.
	Listener string `json:"listener"`
	Route    string `json:"route"`
	Code     string `json:"code"`
	// Where is the part of the request: body, query, or request (path,
	// host or a header).
	Where string `json:"where"`
	// Path is the JSON path, form key or header the refusal names, with
	// any digits that could be a card masked.
	Path string `json:"path"`
	// Offset is the byte offset of the value in the body or query read,
	// or -1 when the refusal names no one value.
	Offset int `json:"offset"`
}

// reports keeps the last hour of would-be refusals by minute, and the
// latest ones. It is safe for concurrent use and shared by every server
// generation.
type reports struct {
	mu      sync.Mutex
	minutes [reportMinutes]reportMinute // ring indexed by unix minute
	recent  []Decision                  // oldest first, at most reportRecent
	added   int                         // decisions added since the start
}

type reportMinute struct {
	start  int64 // unix minute this slot counts; stale slots are reset
	counts map[reportKey]int
}

func newReports() *reports { return &reports{} }

// add counts d in its minute and keeps it among the latest.
func (rp *reports) add(d Decision) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	m := d.Time.Unix() / 60
	slot := &rp.minutes[m%reportMinutes]
	if slot.start != m || slot.counts == nil {
		*slot = reportMinute{start: m, counts: map[reportKey]int{}}
	}
	slot.counts[reportKey{d.Listener, d.Route, d.Code}]++
	if len(rp.recent) == reportRecent {
		rp.recent = slices.Delete(rp.recent, 0, 1)
	}
	rp.recent = append(rp.recent, d)
	rp.added++
}

// count is how many decisions have been added so far.
func (rp *reports) count() int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.added
}

// since returns the decisions added after the first n (as far as the
// latest reportRecent go back), oldest first.
func (rp *reports) since(n int) []Decision {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	k := min(rp.added-n, len(rp.recent))
	if k <= 0 {
		return nil
	}
	return slices.Clone(rp.recent[len(rp.recent)-k:])
}

// reportCount is one route and code's count.
type reportCount struct {
	Listener string `json:"listener"`
	Route    string `json:"route"`
	Code     string `json:"code"`
	Count    int    `json:"count"`
}

// reportMinuteView is one minute of the summary.
type reportMinuteView struct {
	Start  time.Time     `json:"start"`
	Counts []reportCount `json:"counts"`
}

// reportView is GET /report's answer.
type reportView struct {
	// Since is the start of the window: the hour up to now.
	Since time.Time `json:"since"`
	// Total counts the window by route and code.
	Total []reportCount `json:"total"`
	// Minutes lists the minutes of the window that had a decision, oldest
	// first.
	Minutes []reportMinuteView `json:"minutes"`
	// Recent are the latest decisions (at most 50, any age), newest first.
	Recent []Decision `json:"recent"`
}

// view summarizes the hour before now.
func (rp *reports) view(now time.Time) reportView {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	cur := now.Unix() / 60
	first := cur - reportMinutes + 1
	v := reportView{Since: time.Unix(first*60, 0).UTC(), Total: []reportCount{}, Minutes: []reportMinuteView{}, Recent: []Decision{}}
	total := map[reportKey]int{}
	for m := first; m <= cur; m++ {
		slot := rp.minutes[m%reportMinutes]
		if slot.start != m || len(slot.counts) == 0 {
			continue
		}
		mv := reportMinuteView{Start: time.Unix(m*60, 0).UTC(), Counts: sortedCounts(slot.counts)}
		v.Minutes = append(v.Minutes, mv)
		for k, n := range slot.counts {
			total[k] += n
		}
	}
	v.Total = sortedCounts(total)
	for i := len(rp.recent) - 1; i >= 0; i-- {
		v.Recent = append(v.Recent, rp.recent[i])
	}
	return v
}

func sortedCounts(m map[reportKey]int) []reportCount {
	out := make([]reportCount, 0, len(m))
	for k, n := range m {
		out = append(out, reportCount{Listener: k.Listener, Route: k.Route, Code: k.Code, Count: n})
	}
	slices.SortFunc(out, func(a, b reportCount) int {
		if c := strings.Compare(a.Listener, b.Listener); c != 0 {
			return c
		}
		if c := strings.Compare(a.Route, b.Route); c != 0 {
			return c
		}
		return strings.Compare(a.Code, b.Code)
	})
	return out
}

// serveReport answers GET /report: what report mode would have refused in
// the last hour.
func (s *Server) serveReport(w http.ResponseWriter, r *http.Request) error {
	if err := httpx.AllowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, s.reports.view(s.opts.Now()))
	return nil
}

// wouldRefuse records a refusal reject mode would have made on route
// (noRouteLabel for paths without one) of listener (public or egress):
// where is "body", "query" or "request". e's path is masked again before it
// is kept or logged.
func (s *Server) wouldRefuse(r *http.Request, listener, route, where string, e *rewrite.Error) {
	d := Decision{Time: s.opts.Now().UTC(), Listener: listener, Route: route, Code: e.Code, Where: where, Path: httpx.SafePath(e.Path), Offset: e.Offset}
	s.metrics.wouldRefuse.WithLabelValues(listener, route, e.Code).Inc()
	s.reports.add(d)
	s.log.Warn("report mode: reject mode would refuse this request",
		"listener", listener, "route", route, "code", d.Code, "where", where, "path", d.Path, "offset", d.Offset,
		"method", httpx.SafeMethod(r.Method), "remote", r.RemoteAddr)
}
