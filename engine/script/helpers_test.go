package script_test

import (
	"testing"

	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/enginetest"
)

func startServer(t *testing.T, cfg engine.Config) (*engine.Server, string, *enginetest.LogBuffer) {
	return enginetest.Start(t, cfg)
}

func dialRaw(t *testing.T, addr string, level byte) *enginetest.Client {
	return enginetest.Dial(t, addr, level)
}
