package cluster

// Teams and API keys of a cluster are CRDs (teams.sandpit.dev,
// apikeys.sandpit.dev in deploy/kubernetes/13-crd-keys.yaml) rather than
// Secrets: an APIKey holds only the SHA-256 of its key, which is no
// secret, and a CRD lets RBAC give the api role read access to keys
// without read access to every Secret in the namespace; `kubectl get
// apikeys` shows each key's team, prefix and state. Only an admin (the
// `sandpit keys|teams --kubeconfig` CLI with an admin's credentials)
// writes them.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/sandpit-dev/sandpit/internal/store"
)

var (
	teamsGVR   = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "teams"}
	apiKeysGVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "apikeys"}
)

// TeamLabel on a Sandbox names its team's ID, so a team's list reads
// only its own Sandboxes.
const TeamLabel = "sandpit.dev/team"

// Team is the teams.sandpit.dev object of one team, named after it with
// '_' as '.' (team names may hold '_', object names may not, and '.' is in
// no team name).
type Team struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TeamSpec   `json:"spec"`
	Status            TeamStatus `json:"status,omitempty"`
}

// TeamSpec is a team's identity and limits (limits.go).
type TeamSpec struct {
	ID     string      `json:"id"`
	Limits *TeamLimits `json:"limits,omitempty"`
}

// APIKey is the apikeys.sandpit.dev object of one key, named after the
// key's ID.
type APIKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              APIKeySpec   `json:"spec"`
	Status            APIKeyStatus `json:"status,omitempty"`
}

// APIKeySpec is a key's stored form: its hash, never the key.
type APIKeySpec struct {
	Name     string `json:"name,omitempty"`
	TeamID   string `json:"teamID"`
	TeamName string `json:"teamName,omitempty"`
	Hash     string `json:"hash"`
	Prefix   string `json:"prefix,omitempty"`
	Admin    bool   `json:"admin,omitempty"`
}

// APIKeyStatus says whether the key was revoked.
type APIKeyStatus struct {
	RevokedAt *metav1.Time `json:"revokedAt,omitempty"`
}

// ErrNotFound is returned for a team or key that does not exist.
var ErrNotFound = errors.New("not found")

func (c *Client) teams() dynamic.ResourceInterface { return c.dyn.Resource(teamsGVR).Namespace(c.ns) }
func (c *Client) apiKeys() dynamic.ResourceInterface {
	return c.dyn.Resource(apiKeysGVR).Namespace(c.ns)
}

// TeamName is the team's name.
func (t *Team) TeamName() string { return strings.ReplaceAll(t.Name, ".", "_") }

func teamObjectName(name string) string { return strings.ReplaceAll(name, "_", ".") }

// CreateTeam creates team name with a fresh ID.
func (c *Client) CreateTeam(ctx context.Context, name string) (*Team, error) {
	if !store.ValidTeamName(name) {
		return nil, fmt.Errorf("team name %q: want 1 to 63 lowercase letters, digits, '-' and '_', starting with a letter or digit", name)
	}
	u, err := toUnstructured(&Team{
		TypeMeta:   metav1.TypeMeta{APIVersion: Group + "/" + Version, Kind: "Team"},
		ObjectMeta: metav1.ObjectMeta{Name: teamObjectName(name)},
		Spec:       TeamSpec{ID: store.NewTeamID()},
	})
	if err != nil {
		return nil, err
	}
	out, err := c.teams().Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating Team %s: a team of that name exists", name)
	}
	if err != nil {
		return nil, fmt.Errorf("creating Team %s: %w", name, err)
	}
	return fromUnstructured[Team](out)
}

// GetTeam returns the team named name, or ErrNotFound.
func (c *Client) GetTeam(ctx context.Context, name string) (*Team, error) {
	u, err := c.teams().Get(ctx, teamObjectName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no team %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading Team %s: %w", name, err)
	}
	return fromUnstructured[Team](u)
}

// ListTeams lists the teams by name.
func (c *Client) ListTeams(ctx context.Context) ([]Team, error) {
	l, err := c.teams().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Teams: %w", err)
	}
	out := make([]Team, 0, len(l.Items))
	for i := range l.Items {
		t, err := fromUnstructured[Team](&l.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TeamName() < out[j].TeamName() })
	return out, nil
}

// CreateKey makes a key for team (which must exist) and returns its
// plaintext, which is stored nowhere, and its object.
func (c *Client) CreateKey(ctx context.Context, name, team string, admin bool) (string, *APIKey, error) {
	t, err := c.GetTeam(ctx, team)
	if err != nil {
		return "", nil, err
	}
	plain, hash, prefix := store.GenerateKey()
	id := store.NewKeyID()
	u, err := toUnstructured(&APIKey{
		TypeMeta:   metav1.TypeMeta{APIVersion: Group + "/" + Version, Kind: "APIKey"},
		ObjectMeta: metav1.ObjectMeta{Name: strings.ReplaceAll(id, "_", "-")},
		Spec:       APIKeySpec{Name: name, TeamID: t.Spec.ID, TeamName: t.TeamName(), Hash: hash, Prefix: prefix, Admin: admin},
	})
	if err != nil {
		return "", nil, err
	}
	out, err := c.apiKeys().Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("creating APIKey for team %s: %w", team, err)
	}
	k, err := fromUnstructured[APIKey](out)
	if err != nil {
		return "", nil, err
	}
	return plain, k, nil
}

// ListKeys lists the keys, revoked ones too, of team (all when empty),
// oldest first.
func (c *Client) ListKeys(ctx context.Context, team string) ([]APIKey, error) {
	l, err := c.apiKeys().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing APIKeys: %w", err)
	}
	out := make([]APIKey, 0, len(l.Items))
	for i := range l.Items {
		k, err := fromUnstructured[APIKey](&l.Items[i])
		if err != nil {
			return nil, err
		}
		if team == "" || k.Spec.TeamName == team {
			out = append(out, *k)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].CreationTimestamp.Before(&out[j].CreationTimestamp)
	})
	return out, nil
}

// GetKey finds a key by its ID or its prefix.
func (c *Client) GetKey(ctx context.Context, idOrPrefix string) (*APIKey, error) {
	ks, err := c.ListKeys(ctx, "")
	if err != nil {
		return nil, err
	}
	for i := range ks {
		if ks[i].Name == strings.ReplaceAll(idOrPrefix, "_", "-") || ks[i].Spec.Prefix == strings.TrimSuffix(idOrPrefix, "…") {
			return &ks[i], nil
		}
	}
	return nil, fmt.Errorf("no API key matches %q: %w", idOrPrefix, ErrNotFound)
}

// RevokeKey marks key k revoked; the api role's watch drops it.
func (c *Client) RevokeKey(ctx context.Context, k *APIKey) (*APIKey, error) {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	k.Status.RevokedAt = &now
	k.APIVersion, k.Kind = Group+"/"+Version, "APIKey"
	u, err := toUnstructured(k)
	if err != nil {
		return nil, err
	}
	out, err := c.apiKeys().UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("revoking APIKey %s: %w", k.Name, err)
	}
	return fromUnstructured[APIKey](out)
}

// KeyID is the key's ID as the CLI shows it (object names have no '_').
func (k *APIKey) KeyID() string { return strings.Replace(k.Name, "-", "_", 1) }

// KeyCache answers which team a key belongs to from a watched copy of the
// APIKeys, so authenticating a request never waits for the API server,
// and a revoked or deleted key stops working as soon as the watch
// delivers the change (well under a second on a healthy API server).
type KeyCache struct {
	inf cache.SharedIndexInformer

	mu     sync.RWMutex
	byHash map[string]keyEntry
}

type keyEntry struct {
	teamID, name string
	revoked      bool
	id, teamName string
	admin        bool
}

// KeyInfo is who a key is, for the audit log and the admin check.
type KeyInfo struct {
	ID, Name, TeamID, TeamName string
	Admin                      bool
}

// WatchKeys starts a KeyCache that lasts until ctx is done.
func (c *Client) WatchKeys(ctx context.Context) *KeyCache {
	kc := &KeyCache{byHash: map[string]keyEntry{}}
	kc.inf = dynamicinformer.NewFilteredDynamicInformer(c.dyn, apiKeysGVR, c.ns, 0, cache.Indexers{}, nil).Informer()
	_, _ = kc.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { kc.rebuild() },
		UpdateFunc: func(_, o any) { kc.rebuild() },
		DeleteFunc: func(o any) { kc.rebuild() },
	})
	go kc.inf.Run(ctx.Done())
	return kc
}

// rebuild remakes the hash index from the informer's store: keys are few
// and change rarely, and a whole rebuild cannot miss a rename of a hash.
func (kc *KeyCache) rebuild() {
	m := map[string]keyEntry{}
	for _, o := range kc.inf.GetStore().List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		k, err := fromUnstructured[APIKey](u)
		if err != nil {
			continue
		}
		m[k.Spec.Hash] = keyEntry{teamID: k.Spec.TeamID, name: k.Spec.Name, revoked: k.Status.RevokedAt != nil,
			id: k.KeyID(), teamName: k.Spec.TeamName, admin: k.Spec.Admin}
	}
	kc.mu.Lock()
	kc.byHash = m
	kc.mu.Unlock()
}

// Synced reports whether the first list of keys is in.
func (kc *KeyCache) Synced() bool { return kc.inf.HasSynced() }

// Team returns the team ID of key plaintext, and false for an unknown or
// revoked key.
func (kc *KeyCache) Team(plaintext string) (string, bool) {
	k, ok := kc.Lookup(plaintext)
	return k.TeamID, ok
}

// Lookup returns who key plaintext is, and false for an unknown or
// revoked key.
func (kc *KeyCache) Lookup(plaintext string) (KeyInfo, bool) {
	if !store.WellFormedKey(plaintext) {
		return KeyInfo{}, false
	}
	h := store.KeyHashHex(plaintext)
	kc.mu.RLock()
	e, ok := kc.byHash[h]
	kc.mu.RUnlock()
	if !ok || e.revoked {
		return KeyInfo{}, false
	}
	return KeyInfo{ID: e.id, Name: e.name, TeamID: e.teamID, TeamName: e.teamName, Admin: e.admin}, true
}
