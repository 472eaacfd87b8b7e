package iolib

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mqttlua/broker/engine/script"
	lua "github.com/yuin/gopher-lua"
)

// The pg module:
//
//	local db = pg.pool("main")              -- a database named in config.lua ("default" if no name)
//	db:query(sql, arg1, arg2, ...) -> { row, ... } | nil, err
//	db:one(sql, ...)               -> row | nil (no row) | nil, err
//	db:exec(sql, ...)              -> rows affected | nil, err
//
// Statements are parameterised ($1, $2, ... bound to the arguments:
// strings, numbers, booleans, nil for NULL), never built from strings. A
// row is a table by column name; NULL is a missing field; numbers,
// text, booleans map plainly, timestamps become RFC 3339 text, json and
// jsonb tables, numeric a number.
type pgModule struct{ l *Lib }

func (m *pgModule) Name() string { return "pg" }

type pgClient struct {
	backend pgBackend
	timeout time.Duration
}

func (m *pgModule) Open(vm *script.VM) *lua.LTable {
	L := vm.L
	run := func(L *lua.LState) (*pgClient, []string, [][]any, int64, string) {
		c := checkHandle[*pgClient](L, "pg pool", "db:query(sql)")
		sql := L.CheckString(2)
		args := make([]any, 0, L.GetTop()-2)
		for i := 3; i <= L.GetTop(); i++ {
			switch v := L.Get(i).(type) {
			case lua.LString:
				args = append(args, string(v))
			case lua.LNumber:
				args = append(args, luaNumber(v))
			case lua.LBool:
				args = append(args, bool(v))
			case *lua.LNilType:
				args = append(args, nil)
			default:
				L.ArgError(i, "string, number, boolean or nil expected, got "+v.Type().String())
			}
		}
		var cols []string
		var rows [][]any
		var affected int64
		err := vm.Await(L, "pg query", c.timeout, func(ctx context.Context) error {
			var err error
			cols, rows, affected, err = c.backend.query(ctx, sql, args)
			return err
		})
		if err != nil {
			return c, nil, nil, 0, pgError(err)
		}
		return c, cols, rows, affected, ""
	}
	methods := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"query": func(L *lua.LState) int {
			_, cols, rows, _, err := run(L)
			if err != "" {
				return fail(L, err)
			}
			t := L.CreateTable(len(rows), 0)
			for _, r := range rows {
				t.Append(rowTable(L, cols, r))
			}
			L.Push(t)
			return 1
		},
		"one": func(L *lua.LState) int {
			_, cols, rows, _, err := run(L)
			if err != "" {
				return fail(L, err)
			}
			if len(rows) == 0 {
				L.Push(lua.LNil)
				return 1
			}
			L.Push(rowTable(L, cols, rows[0]))
			return 1
		},
		"exec": func(L *lua.LState) int {
			_, _, _, affected, err := run(L)
			if err != "" {
				return fail(L, err)
			}
			L.Push(lua.LNumber(affected))
			return 1
		},
	})
	meta := L.NewTable()
	meta.RawSetString("__index", methods)
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"pool": handles(meta, "database", "pg", func(name string) (any, bool) {
			backend, timeout, ok := m.l.pgFor(name)
			return &pgClient{backend: backend, timeout: timeout}, ok
		}),
	})
}

func rowTable(L *lua.LState, cols []string, row []any) *lua.LTable {
	t := L.CreateTable(0, len(cols))
	for i, c := range cols {
		if i < len(row) && row[i] != nil {
			t.RawSetString(c, pgToLua(L, row[i]))
		}
	}
	return t
}

// pgToLua converts what pgx decoded a column to.
func pgToLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case int16:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case float32:
		return lua.LNumber(x)
	case time.Time:
		return lua.LString(x.Format(time.RFC3339Nano))
	case pgtype.Numeric:
		if f, err := x.Float64Value(); err == nil && f.Valid {
			return lua.LNumber(f.Float64)
		}
		return lua.LNil
	case *big.Int:
		f, _ := new(big.Float).SetInt(x).Float64()
		return lua.LNumber(f)
	case [16]byte: // uuid
		return lua.LString(fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16]))
	case map[string]any, []any, string, bool, float64, []byte, nil:
		return script.ToLua(L, x)
	case json.RawMessage:
		return lua.LString(x)
	}
	return lua.LString(fmt.Sprint(v))
}

func pgError(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Severity + ": " + pe.Message + " (SQLSTATE " + pe.Code + ")"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}

// pgxPool is a pgx pool.
type pgxPool struct{ p *pgxpool.Pool }

func (p *pgxPool) query(ctx context.Context, sql string, args []any) ([]string, [][]any, int64, error) {
	rows, err := p.p.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, 0, err
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	cols := make([]string, len(fields))
	for i, f := range fields {
		cols[i] = f.Name
	}
	var out [][]any
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, nil, 0, err
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, 0, err
	}
	return cols, out, rows.CommandTag().RowsAffected(), nil
}

func (p *pgxPool) close() { p.p.Close() }
