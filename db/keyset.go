package db

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/taskgraph/taskgraph/internal/cursor"
)

// where accumulates parameterized conditions; each "?" in a condition becomes the next $n.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", fmt.Sprintf("$%d", len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return "TRUE"
	}
	return strings.Join(w.conds, " AND ")
}

func (w where) clone() where {
	return where{conds: slices.Clone(w.conds), args: slices.Clone(w.args)}
}

// sortKey is one orderBy choice: the SQL expression rows are sorted by (an index exists for it, with id
// as the tie-break) and the conversions between a row, its cursor key and a SQL parameter.
type sortKey[T any] struct {
	expr  string
	keyOf func(T) any
	param func(json.RawMessage) (any, error)
}

// keysetList is one list the API pages through.
type keysetList[T any] struct {
	table   string
	columns string
	filter  where
	sort    sortKey[T]
	desc    bool
	idOf    func(T) uuid.UUID
	scope   string
	// scan reads one row of columns (nil: pgx.RowToStructByName).
	scan pgx.RowToFunc[T]
	// wrap, when set, turns the page statement into the one sent (a join around it, say); it is given
	// the statement and the direction of its ORDER BY, and must keep the rows in that order.
	wrap func(pageSQL, dir string) string
}

// page is one fetched page, in the list's order.
type page[T any] struct {
	rows    []T
	cursors []string
	info    PageInfo
}

// fetchPage reads one page with keyset pagination: no OFFSET, limit+1 rows to learn whether more
// follow, and (when a cursor was given) an EXISTS on the other side of the cursor, sent in the same
// round trip, to learn whether rows precede the page.
func fetchPage[T any](ctx context.Context, q querier, codec *cursor.Codec, l keysetList[T], req pageRequest) (page[T], error) {
	desc := l.desc != req.backward
	cmp, cmpBack, dir := ">", "<=", "ASC"
	if desc {
		cmp, cmpBack, dir = "<", ">=", "DESC"
	}
	pageWhere, otherWhere := l.filter.clone(), l.filter.clone()
	if req.cursor != nil {
		key, err := l.sort.param(req.cursor.Key)
		if err != nil {
			return page[T]{}, cursor.Invalid()
		}
		pageWhere.add(fmt.Sprintf("(%s, id) %s (?, ?)", l.sort.expr, cmp), key, req.cursor.ID)
		otherWhere.add(fmt.Sprintf("(%s, id) %s (?, ?)", l.sort.expr, cmpBack), key, req.cursor.ID)
	}
	pageSQL := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s %s, id %s LIMIT %d",
		l.columns, l.table, pageWhere.sql(), l.sort.expr, dir, dir, req.limit+1)
	if l.wrap != nil {
		pageSQL = l.wrap(pageSQL, dir)
	}

	scan := l.scan
	if scan == nil {
		scan = pgx.RowToStructByName[T]
	}
	var (
		rows       []T
		otherSide  bool
		collectErr error
	)
	if req.cursor == nil {
		r, err := q.Query(ctx, pageSQL, pageWhere.args...)
		if err != nil {
			return page[T]{}, fmt.Errorf("query %s page: %w", l.table, err)
		}
		rows, collectErr = pgx.CollectRows(r, scan)
	} else {
		b := &pgx.Batch{}
		b.Queue(pageSQL, pageWhere.args...)
		b.Queue(fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s WHERE %s)", l.table, otherWhere.sql()), otherWhere.args...)
		br := q.SendBatch(ctx, b)
		r, err := br.Query()
		if err == nil {
			rows, collectErr = pgx.CollectRows(r, scan)
			if collectErr == nil {
				collectErr = br.QueryRow().Scan(&otherSide)
			}
		} else {
			collectErr = err
		}
		if err := br.Close(); collectErr == nil {
			collectErr = err
		}
	}
	if collectErr != nil {
		return page[T]{}, fmt.Errorf("read %s page: %w", l.table, collectErr)
	}

	more := len(rows) > req.limit
	if more {
		rows = rows[:req.limit]
	}
	if req.backward {
		slices.Reverse(rows)
	}
	p := page[T]{rows: rows, cursors: make([]string, len(rows))}
	for i, row := range rows {
		c, err := codec.Encode(l.scope, l.sort.keyOf(row), l.idOf(row))
		if err != nil {
			return page[T]{}, err
		}
		p.cursors[i] = c
	}
	if req.backward {
		p.info.HasPreviousPage, p.info.HasNextPage = more, otherSide
	} else {
		p.info.HasNextPage, p.info.HasPreviousPage = more, otherSide
	}
	if len(rows) > 0 {
		p.info.StartCursor, p.info.EndCursor = &p.cursors[0], &p.cursors[len(rows)-1]
	}
	return p, nil
}

// countRows counts the rows of a list, ignoring paging (totalCount).
func countRows(ctx context.Context, q querier, table string, w where) (int, error) {
	var n int64
	err := q.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", table, w.sql()), w.args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", table, err)
	}
	return int(n), nil
}

// Sort key conversions. Timestamps travel in cursors as Unix microseconds (PostgreSQL's precision);
// a missing due date is +infinity, carried as math.MaxInt64.

func timeKey(t time.Time) any { return t.UnixMicro() }

func int64Param(raw json.RawMessage) (int64, error) {
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, err
	}
	return n, nil
}

func timeParam(raw json.RawMessage) (any, error) {
	n, err := int64Param(raw)
	if err != nil {
		return nil, err
	}
	return time.UnixMicro(n).UTC(), nil
}

func optionalTimeKey(t *time.Time) any {
	if t == nil {
		return int64(math.MaxInt64)
	}
	return t.UnixMicro()
}

func optionalTimeParam(raw json.RawMessage) (any, error) {
	n, err := int64Param(raw)
	if err != nil {
		return nil, err
	}
	if n == math.MaxInt64 {
		return pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}, nil
	}
	return pgtype.Timestamptz{Time: time.UnixMicro(n).UTC(), Valid: true}, nil
}

func smallintParam(raw json.RawMessage) (any, error) {
	n, err := int64Param(raw)
	if err != nil || n < math.MinInt16 || n > math.MaxInt16 {
		return nil, fmt.Errorf("smallint cursor key out of range")
	}
	return int16(n), nil
}

func stringParam(raw json.RawMessage) (any, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	return s, nil
}
