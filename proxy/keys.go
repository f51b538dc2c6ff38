package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/vault"
)

// keyState is the key lifecycle state every Server generation shares: the
// background rekey and the last count of records per key version.
type keyState struct {
	mu       sync.Mutex
	base     context.Context // parent of rekeys: Serve's, so shutdown stops them
	running  bool
	cancel   context.CancelFunc
	resealed int
	cursor   string
	done     bool
	err      string
	started  time.Time
	finished chan struct{} // closed when the running rekey ends

	usage   map[uint32]int // last KeyUsage; nil until one finished
	records *prometheus.GaugeVec
	// usageWarn is vault.UsageWarnThreshold (tests lower it).
	usageWarn uint64
}

func newKeyState(reg *prometheus.Registry, live func() *Server) *keyState {
	k := &keyState{
		base: context.Background(),
		records: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tok_key_records", Help: "Records sealed under each data key version, at the last count (startup, rekey, GET /keys).",
		}, []string{"version"}),
		usageWarn: vault.UsageWarnThreshold,
	}
	reg.MustRegister(k.records, &sealedCollector{live: live})
	return k
}

// sealedCollector reports the live keyring's per-version seal counts.
type sealedCollector struct{ live func() *Server }

var sealedDesc = prometheus.NewDesc("tok_key_encryptions_total",
	"Encryptions under each data key version by this process (AES-GCM random nonces are safe for about 2^32 per key).",
	[]string{"version"}, nil)

func (c *sealedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sealedDesc }

func (c *sealedCollector) Collect(ch chan<- prometheus.Metric) {
	keys := c.live().opts.Vault.Keyring()
	for _, v := range keys.Versions() {
		ch <- prometheus.MustNewConstMetric(sealedDesc, prometheus.CounterValue, float64(keys.Sealed(v)), strconv.FormatUint(uint64(v), 10))
	}
}

// countKeys counts records per key version, remembers the count for the
// metrics and for Reload, and warns about versions near the nonce limit.
func (s *Server) countKeys(ctx context.Context) (map[uint32]int, error) {
	usage, err := s.opts.Vault.KeyUsage(ctx)
	if err != nil {
		return nil, err
	}
	ks, keys := s.keys, s.opts.Vault.Keyring()
	ks.mu.Lock()
	ks.usage = usage
	warn := ks.usageWarn
	ks.mu.Unlock()
	ks.records.Reset()
	for v, n := range usage {
		ks.records.WithLabelValues(strconv.FormatUint(uint64(v), 10)).Set(float64(n))
	}
	for _, v := range versions(usage, keys) {
		if total := uint64(usage[v]) + keys.Sealed(v); total > warn {
			s.log.Warn("data key version is well on its way to the AES-GCM nonce limit: rotate the keyring (tok keys rotate, SIGHUP, then POST /rekey on the admin listener)",
				"version", v, "records", usage[v], "sealed_by_this_process", keys.Sealed(v), "warn_at", warn, "nonce_limit", uint64(vault.NonceLimit))
		}
	}
	return usage, nil
}

// versions is the union of the keyring's versions and those records use.
func versions(usage map[uint32]int, keys *vault.Keyring) []uint32 {
	vs := keys.Versions()
	for v := range usage {
		if !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs
}

// checkKeyring refuses a keyring that lacks a version records still use,
// by the last count (none yet: nothing to check).
func (ks *keyState) checkKeyring(keys *vault.Keyring) error {
	ks.mu.Lock()
	usage := maps.Clone(ks.usage)
	ks.mu.Unlock()
	have := keys.Versions()
	for _, v := range slices.Sorted(maps.Keys(usage)) {
		if usage[v] > 0 && !slices.Contains(have, v) {
			return fmt.Errorf("keyring lacks data key version %d, which %d records still use: rekey them first", v, usage[v])
		}
	}
	return nil
}

// KeysReport is the JSON of the admin listener's GET /keys: the keyring's
// primary data key version and every version in the keyring or in use.
type KeysReport struct {
	Primary  uint32       `json:"primary"`
	Versions []KeyVersion `json:"versions"`
}

// KeyVersion is one data key version in a [KeysReport].
type KeyVersion struct {
	Version   uint32 `json:"version"`
	Records   int    `json:"records"`                // records sealed under it (a full count)
	Sealed    uint64 `json:"sealed_by_this_process"` // seals by this process since it started
	InKeyring bool   `json:"in_keyring"`
}

// serveKeys answers GET /keys: the primary version and, per version, the
// records using it (counted now, a full scan) and this process's seals.
func (s *Server) serveKeys(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return httpx.Errorf(http.StatusMethodNotAllowed, httpx.CodeMethodNotAllowed, "use GET")
	}
	usage, err := s.countKeys(r.Context())
	if err != nil {
		return err
	}
	keys := s.opts.Vault.Keyring()
	out := KeysReport{Primary: keys.Primary(), Versions: []KeyVersion{}}
	have := keys.Versions()
	for _, v := range versions(usage, keys) {
		out.Versions = append(out.Versions, KeyVersion{v, usage[v], keys.Sealed(v), slices.Contains(have, v)})
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// rekeyStatus is the JSON of GET /rekey.
type rekeyStatus struct {
	Running  bool   `json:"running"`
	Resealed int    `json:"resealed"`
	Cursor   string `json:"cursor"`
	Done     bool   `json:"done"`
	Error    string `json:"error,omitempty"`
}

func (ks *keyState) status() rekeyStatus {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return rekeyStatus{Running: ks.running, Resealed: ks.resealed, Cursor: ks.cursor, Done: ks.done, Error: ks.err}
}

// serveRekey answers GET /rekey (progress) and POST /rekey[?after=CURSOR]
// (start a background rekey, 202; 409 if one is running).
func (s *Server) serveRekey(w http.ResponseWriter, r *http.Request) error {
	ks := s.keys
	switch r.Method {
	case http.MethodGet:
		httpx.WriteJSON(w, http.StatusOK, ks.status())
		return nil
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		return httpx.Errorf(http.StatusMethodNotAllowed, httpx.CodeMethodNotAllowed, "use GET or POST")
	}
	after := r.URL.Query().Get("after")
	ks.mu.Lock()
	if ks.running {
		ks.mu.Unlock()
		return httpx.Errorf(http.StatusConflict, CodeRekeyRunning, "a rekey is already running; GET /rekey shows its progress")
	}
	ctx, cancel := context.WithCancel(ks.base)
	ks.running, ks.cancel, ks.resealed, ks.cursor, ks.done, ks.err = true, cancel, 0, after, false, ""
	ks.started, ks.finished = time.Now(), make(chan struct{})
	ks.mu.Unlock()
	primary := s.opts.Vault.Keyring().Primary()
	s.tryRecord(r, audit.Event{Event: "rekey", Endpoint: "POST /rekey", Token: after, Outcome: "started"})
	s.log.Info("rekey started", "primary", primary, "after", after)
	go s.rekey(ctx, r, after)
	httpx.WriteJSON(w, http.StatusAccepted, ks.status())
	return nil
}

// rekey pages through the store until done, failed or cancelled. Each page
// uses the vault live at that moment, so a reload's new primary applies.
func (s *Server) rekey(ctx context.Context, r *http.Request, after string) {
	ks := s.keys
	var err error
	for {
		var next string
		var n int
		next, n, err = s.live.Load().opts.Vault.Rekey(ctx, after, vault.DefaultRekeyPage)
		ks.mu.Lock()
		ks.resealed += n
		if err == nil {
			ks.cursor = next
		}
		ks.mu.Unlock()
		if err != nil || next == "" {
			break
		}
		after = next
	}
	ks.mu.Lock()
	ks.running, ks.done = false, err == nil
	if err != nil {
		ks.err = err.Error()
	}
	resealed, cursor, took := ks.resealed, ks.cursor, time.Since(ks.started)
	ks.cancel()
	close(ks.finished)
	ks.mu.Unlock()
	outcome := "ok"
	if err != nil {
		outcome = "error"
		s.log.Error("rekey stopped; resume with POST /rekey?after=CURSOR", "resealed", resealed, "cursor", cursor, "err", err)
	} else {
		s.log.Info("rekey finished", "resealed", resealed, "duration", took.Round(time.Millisecond))
	}
	s.tryRecord(r, audit.Event{Event: "rekey", Endpoint: "POST /rekey", Token: cursor, Outcome: outcome})
	if err == nil {
		if _, err := s.live.Load().countKeys(context.WithoutCancel(ctx)); err != nil {
			s.log.Warn("counting records per key version after the rekey failed", "err", err)
		}
	}
}

// startKeys runs for Serve: it counts records per key version in the
// background (the nonce-limit warning), and makes ctx the parent of rekeys.
func (s *Server) startKeys(ctx context.Context) {
	ks := s.keys
	ks.mu.Lock()
	ks.base = ctx
	ks.mu.Unlock()
	go func() {
		if _, err := s.live.Load().countKeys(ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("counting records per key version failed", "err", err)
		}
	}()
}

// stopKeys cancels a running rekey and waits for it (Serve's shutdown).
func (s *Server) stopKeys() {
	ks := s.keys
	ks.mu.Lock()
	running, cancel, finished := ks.running, ks.cancel, ks.finished
	ks.mu.Unlock()
	if running {
		cancel()
		<-finished
	}
}

// Keyring returns the keyring of the live configuration.
func (s *Server) Keyring() *vault.Keyring { return s.live.Load().opts.Vault.Keyring() }

// serveRetire answers POST /keys/retire?version=N, the running tok's half
// of "tok keys retire": once N is not the primary and a fresh count finds
// no record under it, the vault forgets N's key check value, so that a
// keyring without N is accepted at the next reload or start (a recorded
// version missing from the keyring is refused: records may use it).
func (s *Server) serveRetire(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return httpx.Errorf(http.StatusMethodNotAllowed, httpx.CodeMethodNotAllowed, "use POST")
	}
	v, err := strconv.ParseUint(r.URL.Query().Get("version"), 10, 32)
	if err != nil || v == 0 {
		return httpx.Errorf(http.StatusBadRequest, CodeInvalidVersion, "version must be a data key version number")
	}
	ver := uint32(v)
	if s.opts.Vault.Keyring().Primary() == ver {
		return httpx.Errorf(http.StatusConflict, CodeKeyInUse, "version %d is the primary: rotate first, SIGHUP tok, then rekey", ver)
	}
	usage, err := s.countKeys(r.Context())
	if err != nil {
		return err
	}
	if n := usage[ver]; n > 0 {
		return httpx.Errorf(http.StatusConflict, CodeKeyInUse, "%d records still use version %d: rekey them first", n, ver)
	}
	if err := s.opts.Vault.ForgetKeyVersion(r.Context(), ver); err != nil {
		return err
	}
	s.log.Info("data key version retired: its key check value is forgotten", "version", ver)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"retired": ver})
	return nil
}
