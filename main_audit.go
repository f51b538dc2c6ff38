package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tokproxy/tok/config"
	auditlog "github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/vault"
)

// audit is "tok audit verify [-keyring FILE] [-allow-unkeyed] FILE": check
// the audit log's keyed chain. The audit key is derived from the keyring:
// -keyring, else TOK_KEYRING, else the keyring -config names.
func audit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		return usageError(stderr, "tok audit: want verify FILE")
	}
	fs := newFlags("audit verify", stderr)
	keyringPath := fs.String("keyring", "", "keyring `FILE` the audit key is derived from (default: TOK_KEYRING, else the config's)")
	cfgPath := fs.String("config", "", "config `FILE` naming the keyring (default ./tok.yaml if present)")
	allowUnkeyed := fs.Bool("allow-unkeyed", false, "accept unkeyed lines (written before the chain was keyed) at the start of the log")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 1 {
		return usageError(stderr, "tok audit verify: want one FILE")
	}
	file := fs.Arg(0)
	key, err := auditKey(*keyringPath, *cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "tok audit verify: the audit chain is keyed; give the keyring with -keyring FILE (or TOK_KEYRING, or -config):", err)
		return exitFail
	}
	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintln(stderr, "tok audit verify:", err)
		return exitFail
	}
	defer f.Close()
	rep, err := auditlog.Verify(f, key, *allowUnkeyed)
	if err != nil {
		fmt.Fprintf(stdout, "%s: %v (%d lines before it verify)\n", file, err, rep.Lines)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s: ok, %d lines, keyed chain intact; last seq %d, head %s\n", file, rep.Lines, rep.LastSeq, rep.Head)
	for _, g := range rep.Gaps {
		// An outage of the log's disk, sealed by tok: not tampering, but
		// events may be missing.
		fmt.Fprintf(stdout, "%s: outage sealed at line %d: since %s, %d events not written, %d torn line(s) (%d bytes) sealed; cause: %s\n",
			file, g.Line, g.Since.Format(time.RFC3339), g.Lost, g.TornLines, g.TornBytes, cmp.Or(g.Cause, "unknown (found at start)"))
	}
	if rep.TornTail > 0 {
		fmt.Fprintf(stdout, "%s: warning: the log ends in a write cut short (%d bytes; a full disk or a crash): tok seals it at its next start or write\n", file, rep.TornTail)
	}
	if rep.Unkeyed > 0 {
		fmt.Fprintf(stdout, "%s: warning: the first %d lines are unkeyed (written before tok keyed its audit chain): whoever could write the file could have rewritten them\n", file, rep.Unkeyed)
	}
	fmt.Fprintln(stdout, "lines cut from the end are not detected here: compare the last seq with the tok_audit_seq metric's history")
	return exitOK
}

// auditKey loads the keyring for "audit verify" and derives the audit key.
func auditKey(keyringPath, cfgPath string) ([]byte, error) {
	var kf vault.KeyringFile
	switch {
	case keyringPath != "":
		b, err := os.ReadFile(keyringPath)
		if err != nil {
			return nil, fmt.Errorf("read keyring: %w", err)
		}
		if kf, err = vault.ParseKeyringFile(b); err != nil {
			return nil, err
		}
	default:
		if cfgPath == "" {
			cfgPath = defaultConfigFile
		}
		cfg := &config.Config{}
		if _, err := os.Stat(cfgPath); err == nil || os.Getenv(config.EnvKeyring) == "" {
			var lerr error
			if cfg, lerr = config.Load(cfgPath); lerr != nil {
				return nil, lerr
			}
		}
		var err error
		if kf, _, err = cfg.LoadKeyring(os.Getenv); err != nil {
			return nil, err
		}
	}
	keys, err := vault.NewKeyring(kf)
	if err != nil {
		return nil, err
	}
	return auditlog.Key(keys), nil
}
