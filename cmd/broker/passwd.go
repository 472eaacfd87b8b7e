package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// passwd prints a "user:bcrypt-hash" line for scripts/passwd, reading the
// password from the first line of in so that it never appears in a
// command line or shell history.
func passwd(args []string, in io.Reader, out, stderr io.Writer) int {
	if len(args) != 1 || args[0] == "" || strings.ContainsAny(args[0], ":\n") {
		fmt.Fprintln(stderr, "broker: usage: broker passwd USER < password")
		return 2
	}
	line, _ := bufio.NewReader(in).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		fmt.Fprintln(stderr, "broker: passwd: no password on standard input")
		return 2
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(line), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintln(stderr, "broker: passwd:", err)
		return 2
	}
	fmt.Fprintf(out, "%s:%s\n", args[0], hash)
	return 0
}
