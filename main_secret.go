package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tokproxy/tok/proxy/auth"
	"golang.org/x/crypto/bcrypt"
)

// secret runs "secret hash": one line on stdin, its bcrypt hash on stdout.
func secret(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "hash" {
		return usageError(stderr, "tok secret: want hash")
	}
	if code, ok := parseFlags(newFlags("secret hash", stderr), args[1:], stderr); !ok {
		return code
	}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "client secret (one line): ")
		}
	}
	r := bufio.NewReader(io.LimitReader(stdin, 4096))
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "tok secret hash: read stdin:", err)
		return exitFail
	}
	s := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case s == "":
		fmt.Fprintln(stderr, "tok secret hash: empty secret on stdin; refusing")
		return exitFail
	case len(s) > auth.MaxSecretLen:
		fmt.Fprintf(stderr, "tok secret hash: secret longer than %d bytes (bcrypt's limit)\n", auth.MaxSecretLen)
		return exitFail
	}
	if rest, _ := r.Peek(1); len(rest) > 0 {
		fmt.Fprintln(stderr, "tok secret hash: more than one line on stdin; give the secret alone")
		return exitFail
	}
	h, err := bcrypt.GenerateFromPassword([]byte(s), auth.BcryptCost)
	if err != nil {
		fmt.Fprintln(stderr, "tok secret hash:", err)
		return exitFail
	}
	fmt.Fprintln(stdout, string(h))
	return exitOK
}
