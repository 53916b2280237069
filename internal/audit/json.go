package audit

import (
	"time"

	"github.com/sandpit-dev/sandpit/internal/store"
)

// JSON is an audit entry as `sandpit audit --json` prints it and GET
// /sandpit/v1/audit answers it. Its field names are stable: operators'
// tools read them.
type JSON struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	TeamID     string    `json:"team_id"`
	Team       string    `json:"team"`
	KeyID      string    `json:"key_id"`
	KeyName    string    `json:"key_name"`
	Action     string    `json:"action"`
	Target     string    `json:"target"`
	Result     string    `json:"result"`
	Client     string    `json:"client"`
	DurationMS float64   `json:"duration_ms"`
	Detail     string    `json:"detail"`
}

// ToJSON is e as JSON shows it.
func ToJSON(e store.AuditEntry) JSON {
	return JSON{
		ID: e.ID, Time: e.Time.UTC(), TeamID: e.TeamID, Team: e.TeamName, KeyID: e.KeyID, KeyName: e.KeyName,
		Action: e.Action, Target: e.Target, Result: e.Result, Client: e.Client,
		DurationMS: float64(e.Duration) / float64(time.Millisecond), Detail: e.Detail,
	}
}
