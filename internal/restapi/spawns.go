package restapi

import (
	"sync"
	"time"
)

// spawns counts the sandboxes created from each template since the
// daemon started, for the template list's spawnCount and lastSpawnedAt.
// In memory: a restart starts the counts again, which the spec says.
type spawns struct {
	mu     sync.Mutex
	byTmpl map[string]spawnCount
}

type spawnCount struct {
	n    int64
	last time.Time
}

func (s *spawns) add(templateID string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byTmpl == nil {
		s.byTmpl = map[string]spawnCount{}
	}
	c := s.byTmpl[templateID]
	c.n++
	c.last = at
	s.byTmpl[templateID] = c
}

// get returns templateID's count and, when it has one, its last spawn.
func (s *spawns) get(templateID string) (int64, *time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byTmpl[templateID]
	if !ok {
		return 0, nil
	}
	last := c.last.UTC()
	return c.n, &last
}
