package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/vault"
)

// env is one case's files.
type env struct {
	dir, cfg, keyring, db, audit, backup string
	secret                               string
	keyringBefore                        []byte // the keyring tok ran with, for the keyring cases
}

const client = "damage"

// newEnv creates the temporary directory, keyring, client and config.
func newEnv() (*env, error) {
	dir, err := os.MkdirTemp("", "tok-damage-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, cfg: filepath.Join(dir, "tok.yaml"), keyring: filepath.Join(dir, "keyring.yaml"),
		db: filepath.Join(dir, "data", "tok.db"), audit: filepath.Join(dir, "data", "audit.log"), backup: filepath.Join(dir, "backup.db")}
	if err := vault.WriteKeyringFile(e.keyring, vault.NewKeyringFile(), false); err != nil {
		return e, err
	}
	var rnd [16]byte
	rand.Read(rnd[:])
	e.secret = hex.EncodeToString(rnd[:])
	hash, err := bcrypt.GenerateFromPassword([]byte(e.secret), 10)
	if err != nil {
		return e, err
	}
	cfg := fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0"}
vault: {bolt: %q, keyring: %q}
audit: {path: %q}
clients:
  - {name: %s, secret_hash: %q, reveal: true, handle_budget: 1000000000, reveal_budget: 1000000000}
`, e.db, e.keyring, e.audit, client, hash)
	return e, os.WriteFile(e.cfg, []byte(cfg), 0o600)
}

// dcase is one kind of damage.
type dcase struct {
	name string
	// kill: tok is stopped with SIGKILL before the damage, so the second
	// half of the tokens is in the WAL only; else SIGTERM (all in bbolt).
	kill bool
	// rotate: the keyring gets a second data key version before tok
	// first starts, so every record uses version 2.
	rotate bool
	damage func(e *env) error
	// want: substrings a refusal must contain to be clear and specific
	// (nil: tok is expected to start).
	want []string
	// recovery: the README's recovery commands, run when tok refuses.
	recovery [][]string
}

var (
	recoverSalvage = [][]string{{"vault", "recover"}, {"vault", "recover", "-salvage"}}
	// A restore keeps the vault's log when it has something to replay;
	// if it does not reach back to the backup, tok refuses, and recover
	// -salvage applies what it holds.
	restoreBackup  = [][]string{{"vault", "restore", "BACKUP"}, {"vault", "recover"}, {"vault", "recover", "-salvage"}}
	putKeyringBack = [][]string{{"KEYRING"}}
)

var cases = []dcase{
	{name: "db-deleted", kill: true, damage: func(e *env) error { return os.Remove(e.db) },
		want: []string{"vault missing", "tok.db", "-init-vault"}, recovery: restoreBackup},
	{name: "db-zero", kill: true, damage: func(e *env) error { return os.Truncate(e.db, 0) },
		want: []string{"vault missing", "empty", "-init-vault"}, recovery: restoreBackup},
	{name: "db-deleted-no-wal", damage: func(e *env) error {
		for _, p := range []string{e.db, e.db + ".wal.0", e.db + ".wal.1"} {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
		return nil
	}, want: []string{"vault missing", "tok.db.id"}, recovery: restoreBackup},
	{name: "db-zero-no-wal", damage: func(e *env) error {
		os.Remove(e.db + ".wal.0")
		os.Remove(e.db + ".wal.1")
		return os.Truncate(e.db, 0)
	}, want: []string{"vault missing", "empty"}, recovery: restoreBackup},
	{name: "db-half", damage: truncateHalf, want: []string{"vault file damaged", "cut short"}, recovery: restoreBackup},
	{name: "db-half-with-wal", kill: true, damage: truncateHalf, want: []string{"vault file damaged", "cut short"}, recovery: restoreBackup},
	{name: "wal-truncated", kill: true, damage: func(e *env) error {
		seg, fr, err := newestRun(e.db)
		if err != nil {
			return err
		}
		return os.Truncate(seg, fr[len(fr)/2].off+5)
	}, want: []string{"write-ahead log damaged", ".wal.", "cut short", "tok vault recover"}, recovery: recoverSalvage},
	{name: "wal-emptied", kill: true, damage: func(e *env) error {
		seg, _, err := newestRun(e.db)
		if err != nil {
			return err
		}
		return os.Truncate(seg, 0)
	}, want: []string{"write-ahead log damaged", "0 bytes", "tok vault recover"}, recovery: recoverSalvage},
	{name: "wal-deleted", kill: true, damage: func(e *env) error {
		seg, _, err := newestRun(e.db)
		if err != nil {
			return err
		}
		return os.Remove(seg)
	}, want: []string{"write-ahead log damaged", "missing", "tok vault recover"}, recovery: recoverSalvage},
	{name: "wal-flip-mid", kill: true, damage: func(e *env) error {
		seg, fr, err := newestRun(e.db)
		if err != nil {
			return err
		}
		f := fr[len(fr)/2]
		return flip(seg, f.off+f.n/2, 16)
	}, want: []string{"write-ahead log damaged", "offset", "valid frame", "tok vault recover"}, recovery: recoverSalvage},
	{name: "wal-flip-tail", kill: true, damage: func(e *env) error {
		seg, fr, err := newestRun(e.db)
		if err != nil {
			return err
		}
		f := fr[len(fr)-1]
		return flip(seg, f.off+f.n-8, 4)
	}},
	{name: "meta-flip", damage: func(e *env) error {
		f, err := readBolt(e.db)
		if err != nil {
			return err
		}
		return flip(e.db, int64(f.newest)*f.pageSize+16+56, 4) // its checksum
	}, want: []string{"write-ahead log damaged", "older than its log"}, recovery: recoverSalvage},
	{name: "page-header", damage: func(e *env) error {
		f, err := readBolt(e.db)
		if err != nil {
			return err
		}
		root, err := f.bucketRoot("tokens")
		if err != nil {
			return err
		}
		return flip(e.db, int64(root)*f.pageSize+8, 2) // page type
	}, want: []string{"vault file damaged", "page"}, recovery: restoreBackup},
	{name: "data-value", damage: func(e *env) error {
		f, err := readBolt(e.db)
		if err != nil {
			return err
		}
		root, err := f.bucketRoot("tokens")
		if err != nil {
			return err
		}
		offs, lens, _ := f.leafValues(f.firstLeaf(root))
		if len(offs) == 0 {
			return fmt.Errorf("empty leaf")
		}
		return flip(e.db, offs[0]+int64(lens[0])-4, 4) // its GCM tag
	}},
	{name: "data-key", damage: func(e *env) error {
		f, err := readBolt(e.db)
		if err != nil {
			return err
		}
		root, err := f.bucketRoot("tokens")
		if err != nil {
			return err
		}
		leaf := f.firstLeaf(root)
		offs, _, keys := f.leafValues(leaf)
		if len(offs) < 2 {
			return fmt.Errorf("a leaf with fewer than 2 keys")
		}
		// The first key's first byte, inverted: it sorts after the next.
		return flip(e.db, offs[0]-int64(len(keys[0])), 1)
	}, want: []string{"vault file damaged", "damaged key"}, recovery: restoreBackup},
	{name: "keyring-fresh", damage: func(e *env) error {
		os.Remove(e.keyring)
		return vault.WriteKeyringFile(e.keyring, vault.NewKeyringFile(), false)
	}, want: []string{"does not match the vault", "fingerprint key"}, recovery: putKeyringBack},
	{name: "keyring-lacks-version", rotate: true, damage: func(e *env) error {
		f, err := vault.ParseKeyringFile(e.keyringBefore)
		if err != nil {
			return err
		}
		delete(f.DataKeys, 2)
		f.Primary = 1
		return vault.WriteKeyringFile(e.keyring, f, true)
	}, want: []string{"does not match the vault", "lacks data key version 2"}, recovery: putKeyringBack},
}

// truncateHalf cuts the vault file to half of the pages it uses.
func truncateHalf(e *env) error {
	f, err := readBolt(e.db)
	if err != nil {
		return err
	}
	return os.Truncate(e.db, int64(f.hwm)*f.pageSize/2)
}
