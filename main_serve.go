package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy"
	auditlog "github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/memlimit"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
	"github.com/tokproxy/tok/vault/postgres"
)

// serve runs tok until the first SIGTERM or SIGINT, then drains; a second
// signal exits at once.
func serve(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "config `FILE` (default ./tok.yaml if present, else demo defaults)")
	initVault := fs.Bool("init-vault", false, "create a new, empty vault even though an older vault left files beside it (they are moved aside, never deleted)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	slog.SetDefault(log)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		log.Info("signal received: draining; a second signal exits at once", "signal", s.String())
		cancel()
		s = <-sigs
		log.Error("second signal: exiting without draining", "signal", s.String())
		os.Exit(exitFail)
	}()

	if err := runServer(ctx, *path, *initVault, log, stdout); err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			for _, p := range cerr.Problems {
				log.Error("config problem", "problem", p.Error())
			}
			err = fmt.Errorf("%d config problem(s); run \"tok check\"", len(cerr.Problems))
		}
		log.Error("tok stopped", "err", err)
		return exitFail
	}
	log.Info("tok stopped")
	return exitOK
}

// runServer wires config, keys, stores, audit log and proxy, and serves
// until ctx is done. It closes what it opened.
func runServer(ctx context.Context, path string, initVault bool, log *slog.Logger, stdout io.Writer) (err error) {
	cfg, err := loadConfig(path, log)
	if err != nil {
		return err
	}
	for _, o := range cfg.ApplyEnv(os.Getenv) {
		log.Info("environment override", "override", o)
	}
	setMemoryLimit(ctx, cfg.Limits.Memory, log)
	kf, source, err := cfg.LoadKeyring(os.Getenv)
	if err != nil {
		return err
	}
	keyring, err := vault.NewKeyring(kf)
	if err != nil {
		return err
	}
	log.Info("keyring loaded", "source", source, "primary", keyring.Primary(), "versions", keyring.Versions())
	if source == cfg.Vault.Keyring {
		if problem := config.KeyringModeProblem(source); problem != "" {
			log.Warn(problem)
		}
	}

	// The store is opened before the server: its commit hook feeds
	// histograms the server registers (opts.Commits).
	commits := proxy.NewCommitMetrics()
	store, err := openStore(ctx, cfg, initVault, commits.Observe, log)
	if err != nil {
		return err
	}
	defer closeWith(&err, "close store", store)
	mem, err := openVolatile(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeWith(&err, "close volatile store", mem)
	quota := vaultQuota(cfg, store)
	v, err := vault.New(store, keyring, vaultOptions(cfg, mem, quota)...)
	if err != nil {
		return err
	}
	// Never start on a vault tok cannot prove is the one it had, so never
	// on a keyring that does not open this vault: a key check value per key is recorded in the
	// vault, and a mismatch or a missing version refuses to start.
	if err := v.VerifyKeyring(ctx); err != nil {
		return fmt.Errorf("keyring %s does not match the vault; tok refuses to start (see README, Operations: key check values): %w", source, err)
	}
	log.Info("keyring matches the vault's key check values", "versions", keyring.Versions())

	audit, closeAudit, auditTail, err := openAudit(cfg.Audit.Path, stdout)
	if err != nil {
		return err
	}
	defer closeWith(&err, "close audit log", closeAudit)

	opts, err := serverOptions(cfg, v, store, audit, log)
	if err != nil {
		return err
	}
	opts.AuditTail = auditTail
	opts.Volatile = mem
	opts.Commits = commits
	opts.Quota = quota
	srv, err := proxy.New(opts)
	if err != nil {
		return err
	}

	// SIGHUP reloads routes, clients and the keyring; the stores, the audit
	// log and the listeners stay. A config that does not validate is logged
	// and the running one kept.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := reload(path, cfg, store, mem, quota, audit, srv, log); err != nil {
					log.Error("reload refused; the running configuration stays", "err", err)
				}
			}
		}
	}()
	return srv.Run(ctx)
}

// reload re-reads the config file and keyring and hands the result to the
// running server. The store is fixed for the life of the process.
func reload(path string, running *config.Config, store vault.Durable, mem vault.Store, quota *vault.Quota, audit io.Writer, srv *proxy.Server, log *slog.Logger) error {
	cfg, err := loadConfig(path, log)
	if err != nil {
		return err
	}
	cfg.ApplyEnv(os.Getenv)
	if cfg.Vault.Bolt != running.Vault.Bolt || cfg.Vault.Postgres != running.Vault.Postgres || cfg.Vault.Volatile != running.Vault.Volatile || cfg.Audit.Path != running.Audit.Path {
		return errors.New("the vault store or audit path changed: restart tok to apply that")
	}
	if cfg.Limits.VaultBytes != running.Limits.VaultBytes {
		return errors.New("limits.vault_bytes changed: restart tok to apply that")
	}
	kf, _, err := cfg.LoadKeyring(os.Getenv)
	if err != nil {
		return err
	}
	keyring, err := vault.NewKeyring(kf)
	if err != nil {
		return err
	}
	keyring.CarrySealed(srv.Keyring()) // per-version encryption counts survive reloads
	v, err := vault.New(store, keyring, vaultOptions(cfg, mem, quota)...)
	if err != nil {
		return err
	}
	// A keyring whose key for a recorded version differs (a rotation of a
	// stale copy), or that lacks a recorded version, would make records
	// fail to open: refuse it, keep the running one.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := v.VerifyKeyring(ctx); err != nil {
		return err
	}
	opts, err := serverOptions(cfg, v, store, audit, log)
	if err != nil {
		return err
	}
	if err := srv.Reload(opts); err != nil {
		return err
	}
	setMemoryLimit(context.Background(), cfg.Limits.Memory, log) // the limiter runs already
	log.Info("keyring reloaded", "primary", keyring.Primary(), "versions", keyring.Versions())
	return nil
}

// memoryLimit is limits.memory of the config in force, for the
// memlimit.Limiter.
var memoryLimit atomic.Int64

// setMemoryLimit makes limits.memory the Go runtime's soft memory limit
// (see memlimit.Limiter), unless GOMEMLIMIT in the environment has set
// one: the runtime read it, and it stays as given.
func setMemoryLimit(ctx context.Context, limit config.Size, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		log.Info("memory soft limit from GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
		return
	}
	if memoryLimit.Swap(int64(limit)) == 0 {
		debug.SetMemoryLimit(int64(limit))
		limiter := memlimit.New(memoryLimit.Load, log)
		limiter.Start()
		context.AfterFunc(ctx, limiter.Stop)
	}
	log.Info("memory soft limit", "limit", limit.String())
}

// loadConfig reads the config file at path; with no path, ./tok.yaml if it
// exists, else the embedded defaults with demo keys (config.Bootstrap).
func loadConfig(path string, log *slog.Logger) (*config.Config, error) {
	if path == "" {
		if _, err := os.Stat(defaultConfigFile); err == nil {
			path = defaultConfigFile
		}
	}
	if path != "" {
		cfg, err := config.Load(path)
		if err == nil {
			log.Info("config loaded", "file", path)
			for _, w := range cfg.Warnings() {
				log.Warn("config: " + w)
			}
		}
		return cfg, err
	}
	cfg, demo, err := config.Bootstrap(config.DefaultDataDir, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("demo setup: %w", err)
	}
	// One line says where the demo secret is; the secret itself is only in
	// that file: no secret ever reaches a log line.
	log.Warn("NO CONFIG FILE: running on DEMO KEYS with a demo client; not for production (write tok.yaml, see \"tok check\")",
		"demo_client", config.DemoClient, "secret_file", demo.SecretFile, "keyring", demo.Keyring,
		"keyring_created", demo.KeyringCreated, "secret_created", demo.SecretCreated)
	return cfg, nil
}

// openAudit opens the audit log for appending (mode 0600), locked against
// a second tok (two writers would break the keyed chain); "-" is stdout. It also returns the file's tail,
// so the keyed chain continues and a write cut short is sealed.
func openAudit(path string, stdout io.Writer) (io.Writer, io.Closer, auditlog.Tail, error) {
	if path == "-" {
		return stdout, nopCloser{}, auditlog.Tail{}, nil
	}
	f, err := auditlog.OpenFile(path)
	if err != nil {
		return nil, nil, auditlog.Tail{}, err
	}
	return f, f, f.Tail, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// closeWith closes c and, if *err is nil, sets it to the close error.
func closeWith(err *error, what string, c io.Closer) {
	if cerr := c.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("%s: %w", what, cerr)
	}
}

// openStore opens the durable store named by the config: bolt or postgres.
// A bolt vault is created only in a directory no older vault left files in
// (its log, its id marker, a non-empty audit log), or with initVault; what
// Open found and replayed is logged: tok never recovers silently.
func openStore(ctx context.Context, cfg *config.Config, initVault bool, onCommit func(time.Duration, int), log *slog.Logger) (vault.Durable, error) {
	c := cfg.Vault
	var traces []string
	if cfg.Audit.Path != "" && cfg.Audit.Path != "-" {
		traces = append(traces, cfg.Audit.Path)
	}
	if c.Postgres != "" {
		return openPostgres(ctx, c.Postgres, postgres.Options{OnCommit: onCommit, Init: initVault, Traces: traces, Timeout: c.CommitTimeout}, log)
	}
	s, err := bolt.Open(c.Bolt, bolt.Options{OnCommit: onCommit, Init: initVault, Traces: traces, CommitTimeout: c.CommitTimeout})
	if err != nil {
		return nil, err
	}
	rep := s.OpenReport()
	for _, p := range rep.MovedAside {
		log.Warn("file of an older vault moved aside (-init-vault)", "file", p)
	}
	for _, w := range rep.Warnings {
		log.Warn("vault: " + w)
	}
	if rep.Replay.TornFile != "" {
		log.Warn("write-ahead log: torn last frame dropped (a crash in the middle of its write; it was never acknowledged)",
			"file", rep.Replay.TornFile, "offset", rep.Replay.TornOffset, "bytes", rep.Replay.TornBytes, "frames", 1)
	}
	log.Info("vault opened", "store", "bolt", "path", c.Bolt, "vault_id", rep.VaultID, "created", rep.Created, "upgraded", rep.Upgraded,
		"pages", rep.Check.Pages, "check_ms", rep.CheckTime.Milliseconds(),
		"wal_frames_replayed", rep.Replay.Frames, "wal_records_replayed", rep.Replay.Records, "wal_entries_replayed", rep.Replay.Entries)
	return s, nil
}

// openPostgres opens the PostgreSQL store. The URL is never logged: it may
// carry a password.
func openPostgres(ctx context.Context, url string, opts postgres.Options, log *slog.Logger) (vault.Durable, error) {
	s, err := postgres.Open(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	log.Info("vault opened", "store", "postgres", "vault_id", s.VaultID(), "created", s.Created())
	return s, nil
}
