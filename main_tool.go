package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"

	"github.com/tokproxy/tok/config"
	auditlog "github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
)

// toolVault is the vault, keyring and audit log as tok import and tok
// export open them: from the config, as serve does, without listeners.
type toolVault struct {
	cfg     *config.Config
	vault   *vault.Vault
	store   vault.Durable
	keys    *vault.Keyring
	audit   *auditlog.Log
	closers []io.Closer // closed in reverse order
}

// openToolVault opens what the config at cfgPath names for the command
// cmd ("import", "export"). auditPath, if set, replaces the config's audit
// log. On an embedded (bbolt) vault tok serve must be stopped: bbolt lets
// one process hold the file.
func openToolVault(ctx context.Context, cmd, cfgPath, auditPath string, stdout, stderr io.Writer) (_ *toolVault, err error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := loadConfig(cfgPath, log)
	if err != nil {
		return nil, err
	}
	cfg.ApplyEnv(os.Getenv)
	if auditPath != "" {
		cfg.Audit.Path = auditPath
	}
	kf, _, err := cfg.LoadKeyring(os.Getenv)
	if err != nil {
		return nil, err
	}
	keys, err := vault.NewKeyring(kf)
	if err != nil {
		return nil, err
	}
	tv := &toolVault{cfg: cfg, keys: keys}
	defer func() {
		if err != nil {
			tv.Close()
		}
	}()
	store, err := openStore(ctx, cfg, false, nil, log)
	if errors.Is(err, bolt.ErrLocked) {
		return nil, fmt.Errorf("%w\ntok %s opens the embedded (bbolt) vault itself, and bbolt lets one process hold the file: stop tok serve, run tok %s, start tok again (on a PostgreSQL vault tok %s runs beside the servers)", err, cmd, cmd, cmd)
	}
	if err != nil {
		return nil, err
	}
	tv.store = store
	tv.closers = append(tv.closers, store)
	mem, err := openVolatile(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	tv.closers = append(tv.closers, mem)
	opts := []vault.Option{vault.WithVolatile(mem)}
	if q := vaultQuota(cfg, store); q != nil {
		opts = append(opts, vault.WithQuota(q))
	}
	if tv.vault, err = vault.New(store, keys, opts...); err != nil {
		return nil, err
	}
	// The same refusal as serve's: a keyring that does not open this vault
	// must not write to it.
	if err := tv.vault.VerifyKeyring(ctx); err != nil {
		return nil, fmt.Errorf("the keyring does not match the vault: %w", err)
	}
	w, closeAudit, tail, err := openAudit(cfg.Audit.Path, stdout)
	if errors.Is(err, auditlog.ErrLocked) {
		return nil, fmt.Errorf("%w\nthe audit log is held by a running tok: stop it, or give this run an audit log of its own with -audit FILE", err)
	}
	if err != nil {
		return nil, err
	}
	tv.closers = append(tv.closers, closeAudit)
	tv.audit = auditlog.New(w, tail, auditlog.Key(keys), auditlog.Options{Timeout: cfg.Vault.CommitTimeout})
	if torn, pending := tv.audit.Torn(); pending {
		fmt.Fprintf(stderr, "tok %s: the audit log ends in a write cut short (%d bytes): sealing it with a gap line\n", cmd, torn)
	}
	return tv, nil
}

// Close closes what openToolVault opened, the audit log first.
func (tv *toolVault) Close() error {
	var errs []error
	for i := len(tv.closers) - 1; i >= 0; i-- {
		errs = append(errs, tv.closers[i].Close())
	}
	tv.closers = nil
	return errors.Join(errs...)
}

// record writes ev to the audit log from this host's command line.
func (tv *toolVault) record(ev auditlog.Event) error {
	ev.Source = "cli"
	return tv.audit.Write(ev)
}

// operatorName is who runs a command, for the audit log: the login name of
// the process's user, or $USER.
func operatorName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
