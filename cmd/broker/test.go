package main

import (
	"io"

	"github.com/mqttlua/broker/engine/scripttest"
)

// runTests is `broker test`: see scripttest.Command.
func runTests(args []string, stdout, stderr io.Writer) int {
	return scripttest.Command(args, stdout, stderr, nil)
}
