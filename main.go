// Command tok is a sidecar reverse proxy that tokenizes payment card
// numbers before they reach the merchant app. See README.md.
//
// Usage:
//
//	tok [serve] [-config FILE] [-init-vault]  run (default config: ./tok.yaml if present, else demo defaults)
//	tok check -config FILE         validate a config file, listing every problem
//	tok keys new -o FILE           write a fresh keyring (mode 0600)
//	tok keys rotate -keyring FILE  add a data key version and make it primary
//	tok keys retire -keyring FILE -version N [-admin URL]  remove a version no record uses
//	tok secret hash                read a client secret on stdin, print its bcrypt hash
//	tok audit verify [-keyring FILE] FILE  check the audit log's keyed chain
//	tok vault check|recover|restore [-config FILE]  the embedded vault's files: see README, Operations
//	tok import -in FILE -out FILE [-config FILE]  card numbers into the vault, id → token mapping out
//	tok export -recipient FILE -out FILE [-config FILE]  records sealed to another party's key
//	tok explain [-config FILE] [-egress] [-json] FILE  dry run of a request file
//	tok test [-config FILE] PATH...  run request cases with expectations (CI)
//	tok version                    print the version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version or VCS revision from the build info is used.
var version = ""

// defaultConfigFile is read by serve and check when -config is not given.
const defaultConfigFile = "tok.yaml"

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // a runtime error, or problems found by check
	exitUsage = 2 // unknown subcommand or flag
)

const usage = `usage:
  tok [serve] [-config FILE] [-init-vault]
                                 run tok (default config: ./tok.yaml if present,
                                 else the embedded defaults with demo keys in ./data);
                                 -init-vault creates a new empty vault even where an
                                 older one left files (they are moved aside)
  tok check [-config FILE]       validate a config file and list every problem
  tok keys new -o FILE           write a fresh keyring (mode 0600; never overwrites)
  tok keys rotate -keyring FILE  add a data key version and make it primary
  tok keys retire -keyring FILE -version N [-admin URL]
                                 remove data key version N once no record uses it
                                 (asks the running tok's admin listener, default
                                 http://127.0.0.1:9090; rekey first: POST /rekey)
  tok secret hash                read a client secret on stdin, print its bcrypt hash
  tok ca new -o DIR              write tok's egress CA (egress-ca.crt, egress-ca.key mode
                                 0600; never overwrites) for the forward-proxy mode:
                                 install egress-ca.crt in the app's trust store
  tok audit verify [-keyring FILE] [-allow-unkeyed] FILE
                                 check the audit log's keyed chain (needs the keyring:
                                 -keyring, TOK_KEYRING or the config's); names the
                                 first broken line, and lists disk outages tok sealed
  tok vault check [-config FILE]  full check of the embedded vault (tok stopped):
                                 bbolt's own check, every record decrypted, the log
  tok vault recover [-config FILE] [-salvage]
                                 say what a damaged write-ahead log still holds;
                                 -salvage writes it into the vault, old log moved aside
  tok vault restore [-config FILE] [-discard-log] BACKUP
                                 put a GET /backup snapshot in place (tok stopped); the
                                 write-ahead log is replayed onto it unless -discard-log
  tok import -in FILE -out FILE [-config FILE] [-format pan|opaque | -field ROUTE:SELECTOR]
                                 tokenize the card numbers of a JSON Lines or CSV file
                                 (tok stopped on a bbolt vault) and write the id → token
                                 mapping; resumes after a kill; see README, Moving cards
  tok export -recipient FILE.pub -out FILE [-config FILE]
                                 write every record, its card number sealed to the
                                 recipient's X25519 key (HPKE), for another vault
  tok export keygen -o NAME      write a recipient key pair NAME.key (0600), NAME.pub
  tok explain [-config FILE] [-egress] [-entry N] [-json] FILE
                                 dry run of a request file (raw HTTP or HAR) through
                                 the real engine, in memory: the route, each field,
                                 the guard's verdict and the bytes forwarded (masked)
  tok test [-config FILE] [-v] PATH...
                                 run case files (YAML; a folder runs every one):
                                 exit 0 all pass, 1 any fail, 2 usage or config error
  tok version                    print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a command line to its subcommand and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "keys":
		return keys(args, stdout, stderr)
	case "secret":
		return secret(args, stdin, stdout, stderr)
	case "ca":
		return caCommand(args, stdout, stderr)
	case "audit":
		return audit(args, stdout, stderr)
	case "vault":
		return vaultCmd(args, stdout, stderr)
	case "import":
		return importCmd(args, stdout, stderr)
	case "export":
		return exportCmd(args, stdout, stderr)
	case "explain":
		return explain(args, stdout, stderr)
	case "test":
		return testCmd(args, stdout, stderr)
	case "version":
		if code, ok := parseFlags(newFlags("version", stderr), args, stderr); !ok {
			return code
		}
		fmt.Fprintln(stdout, "tok", buildVersion())
		return exitOK
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	return usageError(stderr, "tok: unknown command %q", cmd)
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tok "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	return fs
}

// usageError prints a usage problem (format and args, as for fmt.Printf)
// and the usage, and returns the exit code for it.
func usageError(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, format+"\n%s", append(args, usage)...)
	return exitUsage
}

// parseFlags parses args into fs and refuses positional arguments. If it
// returns ok false, the caller exits with code.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false // flag has printed the error and the usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n%s", fs.Name(), fs.Arg(0), usage)
		return exitUsage, false
	}
	return exitOK, true
}

func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v + " " + bi.GoVersion
}
