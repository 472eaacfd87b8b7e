// Package lualib holds the Lua modules the broker ships for scripts
// (`require "testing"`), embedded in the binary so that `broker` and
// `broker test` find them from any folder. A lualib folder given on the
// command line, or found beside the scripts, is searched first and so
// overrides them.
package lualib

import "embed"

// FS holds the shipped modules, one NAME.lua file each.
//
//go:embed *.lua
var FS embed.FS
