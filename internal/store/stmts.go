package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// stmts are the statements that every API request (key and team lookup)
// and every sandbox create and kill (its template, its record, its
// deletion, audit entries, the savepoints of a group commit) run,
// prepared once per store. Given SQL text, the driver parses a statement
// again on each call, and under load that parsing showed in the daemon's
// profile. A *sql.Stmt is prepared again on each connection that runs
// it, once; in a transaction it runs through tx.StmtContext. Statements
// that run rarely (admin, listings, migrations) stay text.
type stmts struct {
	findTeam      *sql.Stmt
	verifyKey     *sql.Stmt
	putSandbox    *sql.Stmt
	deleteSandbox *sql.Stmt
	appendAudit   *sql.Stmt
	savepoint     *sql.Stmt
	rollbackTo    *sql.Stmt
	release       *sql.Stmt
	// A create resolves its template by ID or by name, then its names.
	getTemplate    *sql.Stmt
	templateByName *sql.Stmt
	templateNames  *sql.Stmt
}

// stmtSpec is one statement of stmts with what it is for and its SQL.
type stmtSpec struct {
	stmt  **sql.Stmt
	name  string
	query string
}

// list pairs each statement with its SQL, so that prepare and close
// cannot miss one.
func (st *stmts) list() []stmtSpec {
	return []stmtSpec{
		{&st.findTeam, "finding a team", findTeamQuery},
		{&st.verifyKey, "verifying a key", verifyKeyQuery},
		{&st.putSandbox, "writing a sandbox", putSandboxQuery},
		{&st.deleteSandbox, "deleting a sandbox", deleteSandboxQuery},
		{&st.appendAudit, "appending an audit entry", appendAuditQuery},
		{&st.savepoint, "opening a savepoint", savepointQuery},
		{&st.rollbackTo, "rolling back to a savepoint", rollbackToQuery},
		{&st.release, "releasing a savepoint", releaseQuery},
		{&st.getTemplate, "reading a template", getTemplateQuery},
		{&st.templateByName, "finding a template by name", templateByNameQuery},
		{&st.templateNames, "reading a template's names", templateNamesQuery},
	}
}

// prepare prepares every statement on db, whose schema must be up to
// date: a statement names tables and columns that migrations make.
func (st *stmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, p := range st.list() {
		stmt, err := db.PrepareContext(ctx, p.query)
		if err != nil {
			_ = st.close()
			return fmt.Errorf("preparing the statement for %s: %w", p.name, err)
		}
		*p.stmt = stmt
	}
	return nil
}

// close closes the statements prepared; calling it twice is fine.
func (st *stmts) close() error {
	var errs []error
	for _, p := range st.list() {
		if *p.stmt == nil {
			continue
		}
		if err := (*p.stmt).Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the statement for %s: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}
