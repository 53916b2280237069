package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// A page cursor is the rowid of the last row a list answered, opaque to
// clients.

// parseCursor decodes a page cursor.
func parseCursor(next string) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(next)
	row, perr := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || perr != nil {
		return 0, errdefs.New(errdefs.ErrInvalidArgument, "invalid nextToken")
	}
	return row, nil
}

// queryPage runs q (ordered by rowid, without a LIMIT) and returns up to
// limit rows (0: all) with the cursor of the next page, "" after the last.
// scan reads one row and its rowid; what names the list in errors.
func queryPage[T any](ctx context.Context, s *SQLite, what, q string, args []any, limit int, scan func(scanner) (T, int64, error)) ([]T, string, error) {
	if limit > 0 {
		q += ` LIMIT ` + strconv.Itoa(limit+1)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("listing %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	var last []int64
	for rows.Next() {
		rec, row, err := scan(rows)
		if err != nil {
			return nil, "", fmt.Errorf("listing %s: %w", what, err)
		}
		out, last = append(out, rec), append(last, row)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing %s: %w", what, err)
	}
	if limit > 0 && len(out) > limit {
		return out[:limit], base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(last[limit-1], 10))), nil
	}
	return out, "", nil
}
