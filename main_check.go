package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/tokproxy/tok/config"
)

// check validates a config file and prints every problem with its line.
func check(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	path := fs.String("config", defaultConfigFile, "config `FILE` to validate")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	var cerr *config.Error
	switch {
	case errors.As(err, &cerr):
		for _, p := range cerr.Problems {
			fmt.Fprintln(stdout, p)
		}
		fmt.Fprintf(stdout, "%s: %d problem(s)\n", *path, len(cerr.Problems))
		return exitFail
	case err != nil:
		fmt.Fprintln(stderr, "tok check:", err)
		return exitFail
	}
	// The file is valid; secrets it names come from the environment, which
	// may be another one where tok will run: warn, do not fail.
	warnings := append(cfg.Warnings(), unsetSecrets(cfg, os.Getenv)...)
	if os.Getenv(config.EnvKeyring) == "" {
		// tok serve warns of the same when it loads the keyring.
		if p := config.KeyringModeProblem(cfg.Vault.Keyring); p != "" {
			warnings = append(warnings, p)
		}
	}
	for _, w := range warnings {
		fmt.Fprintf(stdout, "%s: warning: %s\n", *path, w)
	}
	fmt.Fprintln(stdout, *path+": ok")
	return exitOK
}

// unsetSecrets names the env:NAME references of cfg that getenv leaves
// empty: tok serve refuses to start without them.
func unsetSecrets(cfg *config.Config, getenv func(string) string) []string {
	var out []string
	for i, r := range cfg.Egress {
		refs := []string{r.EgressKey}
		for _, k := range slices.Sorted(maps.Keys(r.Headers)) {
			refs = append(refs, r.Headers[k])
		}
		for _, ref := range refs {
			names, _ := config.EnvRefs(ref) // Parse has validated them
			for _, name := range names {
				if getenv(name) == "" {
					out = append(out, fmt.Sprintf("egress[%d] (%s) reads %s from the environment, and it is not set here: tok serve will refuse to start without it", i, r.Name, name))
				}
			}
		}
	}
	return out
}
