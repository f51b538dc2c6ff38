package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
)

// vaultCmd runs "vault check", "vault recover" and "vault restore" on the
// embedded (bolt) vault the config names. tok must be stopped: they need
// the vault file to themselves.
func vaultCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageError(stderr, "tok vault: want check, recover or restore")
	}
	fs := newFlags("vault "+args[0], stderr)
	cfgPath := fs.String("config", "", "config `FILE` naming the vault (default ./tok.yaml if present, else demo defaults)")
	salvage := fs.Bool("salvage", false, "recover: write what the log still holds into the vault and move the damaged log aside")
	discardLog := fs.Bool("discard-log", false, "restore: move the write-ahead log aside instead of replaying it onto the backup")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	wantArgs := 0
	if args[0] == "restore" {
		wantArgs = 1
	}
	if fs.NArg() != wantArgs {
		return usageError(stderr, "tok vault %s: wrong arguments", args[0])
	}
	cfg, err := loadConfig(*cfgPath, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintln(stderr, "tok vault:", err)
		return exitFail
	}
	cfg.ApplyEnv(os.Getenv)
	if cfg.Vault.Postgres != "" {
		fmt.Fprintln(stderr, "tok vault: the vault is on PostgreSQL: use PostgreSQL's own tools (pg_dump, pg_amcheck)")
		return exitFail
	}
	path := cfg.Vault.Bolt
	switch args[0] {
	case "check":
		return vaultCheck(cfg, path, stdout, stderr)
	case "recover":
		return vaultRecover(path, *salvage, stdout, stderr)
	case "restore":
		rep, err := bolt.Restore(fs.Arg(0), path, *discardLog)
		if err != nil {
			fmt.Fprintln(stderr, "tok vault restore:", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "%s: restored vault %s (%d records) from %s\n", path, rep.VaultID, rep.Records, fs.Arg(0))
		for _, p := range rep.MovedAside {
			fmt.Fprintf(stdout, "moved aside: %s\n", p)
		}
		if rep.OtherVault != "" {
			fmt.Fprintf(stdout, "warning: the vault in place was another one (%s): its files are moved aside\n", rep.OtherVault)
		}
		if rep.KeptLog {
			fmt.Fprintln(stdout, "the write-ahead log stays: tok replays the writes it holds onto the backup at its next start (and refuses, naming the gap, if the log does not reach back to the backup: then run tok vault recover)")
		} else {
			fmt.Fprintln(stdout, "tokens issued after the backup was taken are not in it (the log was moved aside)")
		}
		fmt.Fprintln(stdout, "start tok again")
		return exitOK
	}
	return usageError(stderr, "tok vault: unknown command %q", args[0])
}

// vaultCheck runs the full check: the log's state, bbolt's own consistency
// check and every record decrypted with the keyring.
func vaultCheck(cfg *config.Config, path string, stdout, stderr io.Writer) int {
	kf, _, err := cfg.LoadKeyring(os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "tok vault check:", err)
		return exitFail
	}
	keys, err := vault.NewKeyring(kf)
	if err != nil {
		fmt.Fprintln(stderr, "tok vault check:", err)
		return exitFail
	}
	code := vaultRecover(path, false, stdout, stderr)
	start := time.Now()
	var unreadable []string
	n, err := bolt.CheckRecords(path, func(rec vault.Record, err error) error {
		if err == nil {
			_, err = keys.OpenRecord(rec)
		}
		if err != nil {
			// Masked like every token in tok's logs: no log line holds one whole.
			unreadable = append(unreadable, vault.Mask(rec.Token)+" ("+err.Error()+")")
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(stdout, "%s: FAILED: %v\n", path, err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s: bbolt consistency check ok; %d records, %d unreadable (%v)\n", path, n, len(unreadable), time.Since(start).Round(time.Millisecond))
	for _, u := range unreadable[:min(len(unreadable), 20)] {
		fmt.Fprintf(stdout, "unreadable record: %s\n", u)
	}
	if len(unreadable) > 0 {
		return exitFail
	}
	return code
}

// vaultRecover prints what the vault and its log hold and, with salvage,
// writes what the log still holds into the vault.
func vaultRecover(path string, salvage bool, stdout, stderr io.Writer) int {
	d, err := bolt.Diagnose(path, bolt.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "tok vault recover:", err)
		return exitFail
	}
	if d.FileProblem != "" {
		fmt.Fprintf(stdout, "vault %s: CANNOT BE USED: %s\n", path, d.FileProblem)
		return exitFail
	}
	fmt.Fprintf(stdout, "vault %s: id %s, holds the log up to epoch %d, stopped cleanly: %v\n", path, d.VaultID, d.Epoch, !d.WALOpen)
	for _, sg := range d.Segments {
		state := "ok"
		if sg.Problem != "" {
			state = sg.Problem
		}
		fmt.Fprintf(stdout, "log segment %s: %s; %d valid frames (%d records) not yet in the vault file\n", sg.Path, state, sg.Frames, sg.Records)
	}
	fmt.Fprintf(stdout, "recoverable from the log: %d frames, %d records\n", d.Frames, d.Records)
	for _, l := range d.Damaged {
		fmt.Fprintf(stdout, "LOST: %s\n", l)
	}
	if d.OK() {
		fmt.Fprintln(stdout, "nothing to recover: tok starts on this vault and replays its log")
		return exitOK
	}
	if !salvage {
		fmt.Fprintln(stdout, "run again with -salvage to write the recoverable records into the vault file and move the damaged log aside")
		return exitFail
	}
	sd, err := bolt.Salvage(path, bolt.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "tok vault recover:", err)
		return exitFail
	}
	if sd.Relinked > 0 {
		fmt.Fprintf(stdout, "re-linked %d cards to their tokens (records whose fingerprint entry was lost), so they keep their tokens\n", sd.Relinked)
	}
	fmt.Fprintf(stdout, "salvaged %d records into %s; the damaged log is moved aside (*.damaged-*); start tok again\n", d.Records, path)
	return exitOK
}
