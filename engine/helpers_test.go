package engine_test

import (
	"testing"

	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/enginetest"
)

func repoDir() string { return enginetest.RepoDir() }

func startServer(t *testing.T, cfg engine.Config) (*engine.Server, string, *enginetest.LogBuffer) {
	return enginetest.Start(t, cfg)
}

type rawClient = enginetest.Client

func dialRaw(t *testing.T, addr string, level byte) *rawClient {
	return enginetest.Dial(t, addr, level)
}

func waitFor(t *testing.T, what string, cond func() bool) { enginetest.WaitFor(t, what, cond) }
