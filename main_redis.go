package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
	vredis "github.com/tokproxy/tok/vault/redis"
)

// redisOpenTimeout bounds the first connection to Redis and the check of
// its persistence at start.
const redisOpenTimeout = 10 * time.Second

// openVolatile opens the store of store: memory values: this process's
// memory, or the Redis server vault.volatile names (shared by replicas),
// capped at limits.volatile_records either way. The URL is never logged:
// volatileStore is the vault's store of volatile values as serve wires it:
// records for the vault, fill and pings for the proxy.
type volatileStore interface {
	vault.Store
	proxy.VolatileStore
}

// it may carry a password.
func openVolatile(ctx context.Context, cfg *config.Config, log *slog.Logger) (volatileStore, error) {
	if cfg.Vault.Volatile == "" {
		return memory.New(memory.WithMaxRecords(cfg.Limits.VolatileRecords)), nil
	}
	ctx, cancel := context.WithTimeout(ctx, redisOpenTimeout)
	defer cancel()
	s, err := vredis.Open(ctx, vredis.Options{
		URL:        cfg.Vault.Volatile,
		Password:   os.Getenv(config.EnvRedisPassword),
		CAFile:     cfg.Vault.VolatileCA,
		MaxRecords: cfg.Limits.VolatileRecords,
	})
	if err != nil {
		return nil, err
	}
	logPersistence(s.Persistence(ctx), log)
	log.Info("volatile store opened", "store", "redis", "max_records", cfg.Limits.VolatileRecords)
	return s, nil
}

// logPersistence says, at ERROR level, that the Redis server writes to
// disk: a CVC must never reach a disk, even sealed (PCI DSS 3.3.1). tok
// still starts: the operator may be mid-migration, and refusing would stop
// every checkout.
func logPersistence(p vredis.Persistence, log *slog.Logger) {
	switch {
	case !p.Checked:
		log.Warn("could not check whether Redis persists to disk (CONFIG GET is disabled or not permitted): make sure it runs with save \"\" and appendonly no", "err", p.Err)
	case p.Persists():
		log.Error("Redis persists to disk: CVCs (sealed) reach its RDB or AOF files; run it with save \"\" and appendonly no",
			"save", p.Save, "appendonly", p.AppendOnly)
	default:
		log.Info("Redis does not persist to disk", "save", p.Save, "appendonly", p.AppendOnly)
	}
}
